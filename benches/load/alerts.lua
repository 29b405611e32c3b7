-- wrk script for benches/load/run.sh: posts alerts to tocsin (Alertmanager webhook v4 body) or to
-- Alertmanager (POST /api/v2/alerts), and writes wrk's summary as JSON.
--
-- Settings come from the environment (wrk's script arguments reach only the worker threads, and
-- done() runs in the main thread):
--   LOAD_FORMAT  tocsin | alertmanager
--   LOAD_MODE    distinct (every alert new: unique labels and fingerprint) | same (one alert re-sent)
--   LOAD_BATCH   alerts per request (default 1)
--   LOAD_PREFIX  makes labels unique across runs (default "run")
--   LOAD_FIRST   the number of each thread's first distinct alert (default 0): a run against a
--                database that already holds a run's alerts starts after them, since fingerprints
--                are made of the thread and that number alone
--   LOAD_MAX_REQUESTS  optional: every thread stops after its share of this many answered requests
--   LOAD_THREADS the -t given to wrk (with LOAD_MAX_REQUESTS)
--   LOAD_DONE_DIR  with LOAD_MAX_REQUESTS: each thread creates a file named after it here when done
--   LOAD_OUT     where done() writes the summary JSON (default: stdout only)

local format = os.getenv("LOAD_FORMAT") or "tocsin"
local mode = os.getenv("LOAD_MODE") or "distinct"
local batch = tonumber(os.getenv("LOAD_BATCH") or "1")
local prefix = os.getenv("LOAD_PREFIX") or "run"
local max_requests = tonumber(os.getenv("LOAD_MAX_REQUESTS") or "0")
local out = os.getenv("LOAD_OUT")
local done_dir = os.getenv("LOAD_DONE_DIR")

local starts_at = os.date("!%Y-%m-%dT%H:%M:%SZ")

-- main thread: number the threads
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

-- worker threads
local tid = 0
local seq = tonumber(os.getenv("LOAD_FIRST") or "0")
local quota = 0
local answered = 0
local headers = { ["Content-Type"] = "application/json" }
local same_body = nil

function init(args)
  tid = wrk.thread:get("tid") or 0
  if max_requests > 0 then
    -- worker threads cannot see how many threads there are; LOAD_THREADS says it
    quota = math.ceil(max_requests / tonumber(os.getenv("LOAD_THREADS") or "1"))
  end
end

local function labels_json(key)
  return string.format(
    '{"alertname":"BenchAlert","instance":"%s","job":"bench","severity":"warning","seq":"%s"}',
    key, key)
end

local function tocsin_alert(key, fp)
  return string.format(
    '{"status":"firing","labels":%s,"annotations":{"summary":"bench alert %s"},'
      .. '"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"%s"}',
    labels_json(key), key, starts_at, fp)
end

local function am_alert(key)
  return string.format(
    '{"labels":%s,"annotations":{"summary":"bench alert %s"},"startsAt":"%s"}',
    labels_json(key), key, starts_at)
end

local function body_of(keys_from, n)
  local parts = {}
  for i = 1, n do
    local k = keys_from + i - 1
    local key, fp
    if mode == "same" then
      key, fp = prefix .. "-same-" .. (i - 1), string.format("%08x%08x", 4095, i - 1)
    else
      key = string.format("%s-%d-%d", prefix, tid, k)
      fp = string.format("%08x%08x", tid, k)
    end
    if format == "tocsin" then
      parts[i] = tocsin_alert(key, fp)
    else
      parts[i] = am_alert(key)
    end
  end
  local alerts = "[" .. table.concat(parts, ",") .. "]"
  if format == "tocsin" then
    return '{"version":"4","groupKey":"{}:{alertname=\\"BenchAlert\\"}","truncatedAlerts":0,'
      .. '"status":"firing","receiver":"tocsin","groupLabels":{"alertname":"BenchAlert"},'
      .. '"commonLabels":{"alertname":"BenchAlert","job":"bench"},"commonAnnotations":{},'
      .. '"externalURL":"http://127.0.0.1","alerts":' .. alerts .. '}'
  end
  return alerts
end

function request()
  local body
  if mode == "same" then
    if same_body == nil then same_body = body_of(0, batch) end
    body = same_body
  else
    body = body_of(seq, batch)
    seq = seq + batch
  end
  return wrk.format("POST", nil, headers, body)
end

if max_requests > 0 then
  function response(status, hdrs, body)
    answered = answered + 1
    if answered == quota then
      -- wrk keeps sleeping for its -d after the threads stop: leave a mark for run.sh, which
      -- then interrupts wrk (SIGINT still runs done())
      if done_dir then
        local f = io.open(done_dir .. "/" .. tid, "w")
        if f then f:close() end
      end
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local s = string.format(
    '{"duration_us":%d,"requests":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean)
  if out then
    local f = assert(io.open(out, "w"))
    f:write(s, "\n")
    f:close()
  else
    io.write(s, "\n")
  end
end
