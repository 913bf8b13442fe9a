-- Appended to wrk-report.lua by bench/run.sh for scenario admin's paced
-- runs: each connection waits 2 ms before each request, so `-c16` sends
-- at most about 8,000 requests per second: traffic throughout, with the
-- proxy's core mostly free (the saturating runs measure the scheduler of
-- a 2-core host as much as weir).
function delay()
  return 2
end
