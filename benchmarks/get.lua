-- wrk script: plain GET (headers from -H), printing the same JSON line as verify.lua.
--   wrk -t T -c C -d D -H "Authorization: Bearer ..." -s benchmarks/get.lua URL

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init()
   non2xx = 0
end

function response(status)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrkjson.lua")

function done(summary, latency)
   wrkjson_done(threads, summary, latency)
end
