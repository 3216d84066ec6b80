--- Example canary_health policy: the built-in checks, then the canaries' error
-- ratio from Prometheus (/api/v1/query), at every [canary] interval of the wait.
-- config.toml: [policy] prometheus_url = "https://prom:9090", error_ratio_max = 0.05,
-- optional prometheus_ca_file (an extra CA) and error_ratio_query ({canaries}: their ids).
local rch = require "rch"
local QUERY = 'sum(rate(rch_jobs_failed_total{worker=~"{canaries}"}[5m]))'
  .. ' / sum(rate(rch_jobs_total{worker=~"{canaries}"}[5m]))'

return function(ctx, builtin)
  local ok, reason = builtin(ctx)
  if not ok then return false, reason end
  local p, ids = ctx.settings.policy, {}
  for _, w in ipairs(ctx.canaries) do ids[#ids + 1] = w.id end
  local query = (p.error_ratio_query or QUERY):gsub("{canaries}", table.concat(ids, "|"))
  local r, err = rch.http.get(p.prometheus_url .. "/api/v1/query?query=" .. rch.http.escape(query),
    { ca_file = p.prometheus_ca_file, timeout = 10 })
  if not r then return false, "prometheus: " .. err end
  local doc = rch.json.decode(r.body) or {}
  if r.status ~= 200 or doc.status ~= "success" then return false, ("prometheus: HTTP %d"):format(r.status) end
  local sample = doc.data.result[1] -- no series yet: nothing failed
  local value, max = sample and tonumber(sample.value[2]) or 0, p.error_ratio_max
  local m = { value = value, threshold = max, verdict = value <= max and "pass" or "fail" }
  if value > max then return false, ("error ratio %.4f > %.4f"):format(value, max), m end
  return true, nil, m
end
