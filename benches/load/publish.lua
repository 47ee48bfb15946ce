-- wrk script: durable publishes (POST /api/v4/events), the issue's
-- "64 concurrent connections, at least 50,000 events/s with group commit".
-- Environment: ADMIN_TOKEN. Prints one RESULT line.
--
-- The 40 requests (one per table) are formatted once, in init: building
-- each request in Lua cost wrk ~6 µs of CPU per request, on the same two
-- cores as the server. There is no `response` callback either (wrk then
-- skips handing headers and bodies to Lua); wrk still counts answers of
-- 400 and above in err_status (and in requests: publish.sh fails a run with
-- any), and publish.sh checks that the store numbered at least as many
-- events as were answered (publish-load also reports each event's hash).
local token = os.getenv("ADMIN_TOKEN") or "benchadmin"
local requests = {}
local counter = 0

init = function(args)
  for i = 0, 39 do
    local body = string.format(
      '{"code":"waiter_call","table":%d,"invoice":null,"order":null,' ..
      '"table_repr":{"id":%d,"name":"Стол %d","max_guests":4}}',
      1000000 + i, 1000000 + i, i)
    requests[i] = wrk.format("POST", "/api/v4/events", {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }, body)
  end
end

request = function()
  counter = counter + 1
  return requests[counter % 40]
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d err_status=%d err_timeout=%d err_conn=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    summary.requests, summary.errors.status, summary.errors.timeout,
    summary.errors.connect + summary.errors.read + summary.errors.write))
end
