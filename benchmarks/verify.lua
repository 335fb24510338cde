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

function done(summary, latency)
   local non2xx_total = 0
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + thread:get("non2xx")
   end
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": {"connect": %d, "read": %d, ' ..
      '"write": %d, "timeout": %d}, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, non2xx_total, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
