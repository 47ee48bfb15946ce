-- wrk script: durable publishes (POST /api/v4/events), the issue's
-- "64 concurrent connections, at least 50,000 events/s with group commit".
-- Environment: ADMIN_TOKEN. Prints one RESULT line; non-201 answers count
-- as errors (wrk's status errors).
local token = os.getenv("ADMIN_TOKEN") or "benchadmin"
local counter = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"code":"waiter_call","table":%d,"invoice":null,"order":null,' ..
    '"table_repr":{"id":%d,"name":"Стол %d","max_guests":4}}',
    1000000 + counter % 40, 1000000 + counter % 40, counter % 40)
  return wrk.format("POST", "/api/v4/events", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

response = function(status, headers, body)
  if status ~= 201 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d err_status=%d err_timeout=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    summary.requests, summary.errors.status, summary.errors.timeout))
end
