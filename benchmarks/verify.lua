-- wrk script: POST /otp/verify with pre-issued phone/code pairs, each pair used once.
--   wrk -t T -c C -d D -s benchmarks/verify.lua URL -- PAIRS_FILE T [LIMIT]
-- PAIRS_FILE has one "phone,code" a line; thread i takes lines i, i+T, i+2T...
-- With LIMIT, a thread stops once LIMIT/T answers are in (a count-bound run; give the file C spare pairs
-- so the requests still in flight then are fresh ones too). Without it, it wraps round (repeats are
-- answered 4xx by the app and counted as "non2xx" in the JSON line done() prints).

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local path, nthreads = args[1], tonumber(args[2])
   limit = args[3] and math.floor(tonumber(args[3]) / nthreads) or nil
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

function request()
   index = index % #requests + 1
   return requests[index]
end

function response(status)
   answered = answered + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
   if limit and answered >= limit then
      wrk.thread:stop()
   end
end

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrkjson.lua")

function done(summary, latency)
   wrkjson_done(threads, summary, latency)
end
