-- replywindow benchmark: wrk cycles through a prepared entries file (see bench/payloads.py).
--   wrk -s bench/wrk.lua URL -- ENTRIES_FILE NONCE THREADS RATE
-- T entries get an id unique to the run (NONCE, the thread, a counter); Y entries take the
-- next body from the pool, each thread its own stride of it. RATE > 0: requests are paced to
-- that many per second in all (each thread hands out send slots at RATE / THREADS a second;
-- a connection waits for the next free slot, or takes a missed one at once), so latency can
-- be read at a given rate.
-- done() prints one line, "BENCHJSON {...}", for the harness.

local made = 0
function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

local function split(line)
  local out, start = {}, 1
  while true do
    local i = string.find(line, "\t", start, true)
    if not i then
      out[#out + 1] = string.sub(line, start)
      return out
    end
    out[#out + 1] = string.sub(line, start, i - 1)
    start = i + 1
  end
end

local slots, pool = {}, {}
local nonce, nthreads = "1", 1
local i, j = 0, 0

function init(args)
  local headers = {}
  local entries = {}
  nonce = args[2] or "1"
  nthreads = tonumber(args[3] or "1")
  local rate = tonumber(args[4] or "0")
  for line in io.lines(args[1]) do
    local f = split(line)
    local kind = f[1]
    if kind == "H" then
      headers[f[2]] = f[3]
    elseif kind == "P" then
      pool[#pool + 1] = f[2]
    elseif kind == "T" or kind == "F" or kind == "Y" then
      entries[#entries + 1] = f
    end
  end
  for _, f in ipairs(entries) do
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    if f[4] ~= "" then h["Content-Type"] = f[4] end
    local body = f[5]
    if body == "" then body = nil end
    slots[#slots + 1] = {kind = f[1], method = f[2], path = f[3], headers = h,
                         a = body, b = f[6]}
  end
  i = math.floor(#slots * tid / nthreads)
  if rate > 0 then
    local ffi = require("ffi")
    ffi.cdef("typedef struct { long tv_sec; long tv_nsec; } bench_timespec;" ..
             "int clock_gettime(int clk_id, bench_timespec *tp);")
    local ts = ffi.new("bench_timespec")
    local function now_ms()
      ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
    local interval = 1000 * nthreads / rate
    local next_at = nil
    -- Slots missed while every connection waited are made up as connections come free (as a
    -- constant-rate load generator does), so the pace offered is the pace asked for; only
    -- those over a second late are given up.
    delay = function()
      local t = now_ms()
      if next_at == nil or next_at < t - 1000 then next_at = t end
      local wait = next_at - t
      next_at = next_at + interval
      return math.max(0, math.floor(wait + 0.5))
    end
  end
end

function request()
  i = i + 1
  local s = slots[(i - 1) % #slots + 1]
  local body = s.a
  if s.kind == "T" then
    body = s.a .. nonce .. string.format("%02d%09d", tid, i) .. s.b
  elseif s.kind == "Y" then
    j = j + 1
    body = pool[((j - 1) * nthreads + tid) % #pool + 1]
  end
  return wrk.format(s.method, s.path, s.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
