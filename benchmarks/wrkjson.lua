-- The WRKJSON line both wrk scripts print when a run ends (loaded with dofile from get.lua and verify.lua).
-- Needs the script's `threads` table (each thread's "non2xx" count).

function wrkjson_done(threads, summary, latency)
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
