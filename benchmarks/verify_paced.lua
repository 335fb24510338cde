-- wrk script: POST /otp/verify with pre-issued phone/code pairs, each pair used once, at a paced rate.
--   wrk -t T -c C -d D -s benchmarks/verify_paced.lua URL -- PAIRS_FILE T DELAY_MS
-- Like verify.lua, but each connection waits DELAY_MS before each request (wrk's delay()), so C connections
-- offer about C * 1000 / (DELAY_MS + latency) requests/s: an open-ish load held well below capacity, where
-- latency percentiles mean "what a user waits" rather than "how long the queue is".

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local path, nthreads = args[1], tonumber(args[2])
   pause = tonumber(args[3])
   requests = {}
   local n = 0
   for line in io.lines(path) do
      if n % nthreads == id then
         local phone, code = line:match("^([^,]+),([^,]+)$")
         local body = string.format('{"phone":"%s","code":"%s"}', phone, code)
         requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
      end
      n = n + 1
   end
   index, answered, non2xx = 0, 0, 0
end

function delay()
   return pause
end

function request()
   index = index % #requests + 1
   return requests[index]
end

function response(status)
   answered = answered + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrkjson.lua")

function done(summary, latency)
   wrkjson_done(threads, summary, latency)
end
