--- Verification of downloaded release assets, before anything is extracted
-- or installed: the minisign signature of checksums.txt when a public key is
-- configured (its trusted comment must name the version), then the tarball's
-- sha256 against both its .sha256 and its checksums.txt line.
local rch = require "rch"

local M = {}

--- The digest a .sha256 file gives for `name` ("<hex>  <name>", or a bare hex).
-- @return lowercase hex, or nil, err
function M.sha256_for(text, name, source)
  local sums, err = rch.crypto.parse_checksums(text)
  if not sums then return nil, source .. " " .. err end
  if sums[name] then return sums[name] end
  local bare = text:match("^%s*(%x+)%s*$")
  if bare and #bare == 64 then return bare:lower() end
  return nil, ("%s does not give a sha256 for %s"):format(source, name)
end

-- Does the trusted comment name `version`? "rch 0.2.0" (or "rch v0.2.0"),
-- as a whole word, anywhere in the comment.
local function names_version(comment, version)
  local padded = " " .. comment:gsub("%s+", " ") .. " "
  for _, v in ipairs({ version, "v" .. version }) do
    if padded:find(" rch " .. v .. " ", 1, true) then return true end
  end
  return false
end

--- Checks the signatures of checksums.txt (checksums.txt.minisig and/or
-- checksums.txt.sig: every one present must verify and name the version).
-- @param fetched from download.fetch
-- @param pubkey the configured key ("" = none)
-- @return "verified", {key_id, trusted_comment, files}; or "unsigned", {unchecked = names present};
-- or nil, err naming the file
function M.signature(release, fetched, pubkey)
  local names = {}
  for _, s in ipairs(fetched.signatures) do names[#names + 1] = s.name end
  if pubkey == nil or pubkey == "" then return "unsigned", { unchecked = names } end
  if #fetched.signatures == 0 then
    return nil, ("release %s has no checksums.txt.minisig (or checksums.txt.sig), but update.minisign_pubkey is"
      .. " configured: refusing an unsigned release"):format(release.tag)
  end
  local details
  for _, sig in ipairs(fetched.signatures) do
    local result, err = rch.crypto.minisign_verify_file(pubkey, fetched.checksums_path, sig.text)
    if not result then
      return nil, ("checksums.txt of %s: signature verification failed (%s): %s"):format(release.tag, sig.name, err)
    end
    if not names_version(result.trusted_comment, release.version) then
      return nil, ("%s of %s: its trusted comment \"%s\" does not name rch %s (a signature made for another"
        .. " release)"):format(sig.name, release.tag, result.trusted_comment, release.version)
    end
    details = details or { key_id = result.key_id, trusted_comment = result.trusted_comment }
  end
  details.files = names
  return "verified", details
end

--- Checks the tarball's sha256 against the .sha256 asset and checksums.txt.
-- @return the tarball's sha256, or nil, err naming the file and both digests
function M.checksums(release, found, fetched)
  local name = found.tarball.name
  local from_sha, err = M.sha256_for(fetched.sha256_text, name, found.sha256.name)
  if not from_sha then return nil, err end
  local sums
  sums, err = rch.crypto.parse_checksums(fetched.checksums_text)
  if not sums then return nil, ("checksums.txt of %s %s"):format(release.tag, err) end
  local from_list = sums[name]
  if not from_list then
    return nil, ("checksums.txt of %s has no line for %s"):format(release.tag, name)
  end
  if from_list ~= from_sha then
    return nil, ("%s of %s says %s but checksums.txt says %s"):format(found.sha256.name, release.tag, from_sha, from_list)
  end
  local actual
  actual, err = rch.crypto.sha256_file(fetched.tarball)
  if not actual then return nil, err end
  if actual ~= from_list then
    return nil, ("%s (downloaded from %s) has sha256 %s, expected %s: refusing it"):format(fetched.tarball,
      found.tarball.url, actual, from_list)
  end
  return actual
end

return M
