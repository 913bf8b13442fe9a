-- wrk script for scenario (u), concatenated after wrk-report.lua by run.sh:
-- every request is a POST whose 16,000-byte body is sent with
-- `Transfer-Encoding: chunked`, in 4 chunks of 4,000 bytes, so that the
-- proxy parses the chunked framing and forwards the body (weir re-frames it
-- on its fast path, weir_http::reframe; nginx buffers it, by default, and
-- sends it upstream with a Content-Length).
local chunk = string.rep("x", 4000)
local body = ""
for _ = 1, 4 do
  body = body .. string.format("%x\r\n", #chunk) .. chunk .. "\r\n"
end
body = body .. "0\r\n\r\n"
local req

init = function(args)
  req = "POST / HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
    "\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n" .. body
end

request = function()
  return req
end
