--- Hook channels: picks the release `rch update` installs for a channel.
-- Replace it with hooks/channels.lua in your config dir (or a --script-dir) to
-- define other rules; call builtin(ctx) to keep these for the channels you do
-- not change.
--   stable   the newest release that is neither a prerelease nor a draft
--   beta     the newest release that is not a draft, prereleases included,
--            except nightly builds
--   nightly  the newest non-draft release tagged nightly (the tag contains
--            "nightly", e.g. v0.4.0-nightly.20250101)
-- Newest means semver precedence; releases whose tag is not a semver version
-- never reach this hook. A `--version` pin bypasses it.
-- @param ctx { channel = "stable" | "beta" | "nightly" | …,
--   releases = list, newest first, of { version (no "v"), tag, name, prerelease,
--     draft, published_at, body, assets = {{name, size, url}}, raw (the JSON object) },
--   current_version, compare = function(a, b) -> -1 | 0 | 1 (semver), log = rch.log }
-- @param builtin the built-in hook when this file replaces it (nil here)
-- @return the chosen release (an element of ctx.releases), or nil, "why none fits"
return function(ctx, builtin) -- luacheck: no unused args
  local function nightly(r) return r.tag:lower():find("nightly", 1, true) ~= nil end
  local accept
  if ctx.channel == "stable" then
    accept = function(r) return not r.draft and not r.prerelease and not nightly(r) end
  elseif ctx.channel == "beta" then
    accept = function(r) return not r.draft and not nightly(r) end
  elseif ctx.channel == "nightly" then
    accept = function(r) return not r.draft and nightly(r) end
  else
    return nil, ("unknown channel '%s' (stable, beta, nightly)"):format(tostring(ctx.channel))
  end
  for _, r in ipairs(ctx.releases) do
    if accept(r) then return r end
  end
  return nil, ("no %s release among the %d listed"):format(ctx.channel, #ctx.releases)
end
