-- Journals group-commit and are durable when append returns; the audit hash
-- chain detects an edited, a deleted and a swapped line.
local rch = require "rch"
local audit = require "rch.audit"

local dir = os.tmpname()
os.remove(dir)
assert(rch.fs.mkdirs(dir))

-- 1. 200 tasks appending at once: every line lands, in fewer flushes than lines,
-- and each line is readable from disk as soon as its append returned.
do
  local path = dir .. "/journal.jsonl"
  local journal = assert(rch.store.open_journal(path))
  local items = {}
  for i = 1, 200 do items[i] = i end
  local _, errors = rch.parallel(items, 200, function(i)
    assert(journal:append(rch.json.encode({ n = i })))
    local lines = assert(rch.store.read_lines(path))
    local seen = false
    for _, line in ipairs(lines) do
      if rch.json.decode(line).n == i then seen = true end
    end
    assert(seen, "line " .. i .. " not on disk when append returned")
  end)
  assert(errors == nil, errors and select(2, next(errors)))
  local stats = journal:stats()
  assert(stats.lines == 200, "lines written: " .. stats.lines)
  assert(stats.flushes < 20, "expected group commits, got " .. stats.flushes .. " flushes for 200 lines")
  -- A table is written as rch.json.encode writes it.
  local entry = { worker = "w1", status = "Preflight", steps = rch.json.array(), note = "x\ny" }
  assert(journal:append(entry))
  assert(rch.store.last_line(path) == rch.json.encode(entry), rch.store.last_line(path))
  -- each_json_line: every complete line decoded (false when it is not JSON), the torn tail counted.
  local f = assert(io.open(path, "ab"))
  f:write("not json\n", '{"tail":')
  f:close()
  local seen, last = {}, nil
  local count, torn = rch.store.each_json_line(path, function(v, i) seen[i], last = v, i end)
  assert(count == 202 and last == 202 and torn == 8, ("%s lines, %s torn bytes"):format(count, torn))
  assert(seen[1].n and seen[201].worker == "w1" and seen[202] == false, "values by line")
  -- after = N: the lines past N only, numbered as in the file; all of them counted.
  local past = {}
  count, torn = rch.store.each_json_line(path, function(v, i) past[#past + 1] = { v, i } end, { after = 200 })
  assert(count == 202 and torn == 8 and #past == 2, ("%s lines, %s torn bytes, %d seen"):format(count, torn, #past))
  assert(past[1][2] == 201 and past[1][1].worker == "w1" and past[2][2] == 202 and past[2][1] == false, "lines past 200")
  -- fields: an object line gets only the fields named; what it leaves out must still be valid JSON.
  local fpath = dir .. "/fields.jsonl"
  assert(rch.fs.write_atomic(fpath, table.concat({
    '{"a":1,"skip":{"deep":[1,{"x":"y\\n"}],"t":true},"b":"two","c":null}',
    '{"a":1,"skip":{"deep":[1,}}',
    '[1,2]',
    '{"skip":"\\u00e9","a":"\\u00e9"}',
  }, "\n") .. "\n"))
  local got = {}
  rch.store.each_json_line(fpath, function(v, i) got[i] = v end, { fields = { "a", "b" } })
  assert(got[1].a == 1 and got[1].b == "two" and got[1].skip == nil and got[1].c == nil, rch.json.encode(got[1]))
  assert(got[2] == false, "invalid JSON in a field left out must still be refused")
  assert(got[3][1] == 1 and got[3][2] == 2, "a line that is not an object comes whole")
  assert(got[4].a == "\195\169", "the parser's path (\\u) decodes the fields too")
  local ok, err = pcall(journal.append, journal, "a\nb")
  assert(not ok and err:find("cannot contain a newline"), err)
end

-- 2. The audit chain: intact, then edited, deleted and swapped lines are named.
do
  local path = dir .. "/audit.jsonl"
  local log = assert(audit.open({ path }, "dep-1"))
  for i = 1, 5 do log:log("WorkerPreflight", "w" .. i, { i = i }) end
  local ok, report = audit.verify_file(path)
  assert(ok and report.entries == 5 and report.head.seq == 5 and report.beyond_head == 0, tostring(report))
  local lines = assert(rch.store.read_lines(path))
  local function check_broken(mutated, want_line)
    local copy = dir .. "/mutated.jsonl"
    os.remove(copy .. ".head")
    assert(rch.fs.write_atomic(copy, table.concat(mutated, "\n") .. "\n"))
    local vok, msg = audit.verify_file(copy)
    assert(not vok, "tampering not detected")
    assert(msg:find(":" .. want_line .. ": hash chain broken", 1, true), msg)
  end
  local edited = { lines[1], lines[2], (lines[3]:gsub('"w3"', '"w9"')), lines[4], lines[5] }
  check_broken(edited, 4)
  check_broken({ lines[1], lines[2], lines[4], lines[5] }, 3)
  check_broken({ lines[1], lines[3], lines[2], lines[4], lines[5] }, 2)
  -- Reopening continues the chain from the last line on disk.
  local again = assert(audit.open({ path }, "dep-2"))
  again:log("DeploymentStarted", nil, {})
  local ok2, report2 = audit.verify_file(path)
  -- With chain, each line's seq and sha256 as chain_seq and crypto.sha256 read them.
  local raw = assert(rch.store.read_lines(path))
  rch.store.each_json_line(path, function(_, i, seq, sha256)
    assert(seq == rch.store.chain_seq(raw[i]) and sha256 == rch.crypto.sha256(raw[i]), "line " .. i)
  end, { chain = true })
  assert(ok2 and report2.entries == 6 and report2.head.seq == 6, tostring(report2))
  for i, line in ipairs(assert(rch.store.read_lines(path))) do
    assert(rch.store.chain_seq(line) == i, line)
  end

  -- 3. A cut-off tail is caught by the head; a torn last line is named.
  local text = assert(rch.fs.read(path))
  local six = assert(rch.store.read_lines(path))
  local function write_log(body)
    local f = assert(io.open(path, "wb"))
    f:write(body)
    f:close()
  end
  write_log(table.concat(six, "\n", 1, 4) .. "\n")
  local tok, tmsg = audit.verify_file(path)
  assert(not tok and tmsg:find("says 6 entries, the file has 4: the last 2 were removed", 1, true), tmsg)
  write_log(text .. '{"prev_hash":"00')
  tok, tmsg = audit.verify_file(path)
  assert(not tok and tmsg:find(":7: torn last line (16 bytes without a newline)", 1, true), tmsg)
  -- The last entry rewritten with a chain recomputed to match: the head's hash differs.
  write_log(table.concat(six, "\n", 1, 5) .. "\n" .. six[6]:gsub("DeploymentStarted", "DeploymentStartex") .. "\n")
  tok, tmsg = audit.verify_file(path)
  assert(not tok and tmsg:find(":6: this entry does not match the head", 1, true), tmsg)
  -- A head one batch behind (writer killed after its fsync): intact, reported.
  write_log(text)
  local lagging = dir .. "/lag.jsonl"
  assert(rch.fs.write_atomic(lagging, text))
  local f = assert(io.open(lagging .. ".head", "wb"))
  f:write((assert(io.open(path .. ".head", "rb")):read("*a"):gsub('"seq":6,"sha256":"%x+"',
    ('"seq":5,"sha256":"%s"'):format(rch.crypto.sha256(six[5])))))
  f:close()
  local lok, lreport = audit.verify_file(lagging)
  assert(lok and lreport.beyond_head == 1, tostring(lreport))
end

-- write_json_atomic writes what rch.json.encode(value, {pretty = true}) .. "\n" would.
do
  local doc = { id = "d1", workers = { { worker_id = "w1", steps = rch.json.array() } }, note = "caf\xc3\xa9" }
  assert(rch.fs.write_json_atomic(dir .. "/doc.json", doc))
  assert(rch.fs.read(dir .. "/doc.json") == rch.json.encode(doc, { pretty = true }) .. "\n")
  assert(not pcall(rch.fs.write_json_atomic, dir .. "/bad.json", { f = print }), "unencodable values raise")
  assert(not rch.fs.exists(dir .. "/bad.json"), "nothing written for them")
end

os.execute("rm -rf '" .. dir .. "'")
