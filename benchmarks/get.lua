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
