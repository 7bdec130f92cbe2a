-- tollgate-analytics: puts Tollgate's usage, cost and latency into Kong's own serialized log (`ai.proxy.*`),
-- where Kong's log plugins and the prometheus plugin (`ai_metrics`) read them.
--
-- An external (Python) plugin cannot reach the log in time: it has no header_filter or body_filter, and its log
-- handler runs in a timer after the other log plugins have serialized. The relay knows the usage only when the
-- answer ends, so it hands it to this plugin on the response:
--   * access: ask the relay for analytics (an upstream request header, set here so a client cannot fake it);
--   * header_filter: the relay's response header holds the entry (a whole answer), or what was known when a stream
--     began plus `"trailer": true` and a random `nonce`; the header never reaches the client;
--   * body_filter: a stream's final entry comes after its end as a line `: tollgate-analytics <nonce> {json}` and a
--     blank line, cut out here (also when split across chunks), so the client gets the stream byte for byte. Only
--     the nonce, which the client and the model never see, marks it: no text a model writes can pass for it.
-- See README.md for what happens when a client leaves mid-stream (nginx runs no body_filter after that).

local cjson = require("cjson.safe")

local HEADER = "X-Tollgate-Analytics"
local MARKER = ": tollgate-analytics "
local PARTS = { "meta", "usage", "cache" }

local TollgateAnalytics = {
  PRIORITY = 770,  -- beside tollgate-proxy; the order does not matter: its work is in the filters
  VERSION = "0.1.0",
}

local function record(entry)
  if type(entry) ~= "table" or type(entry.proxy) ~= "table" then
    return
  end
  for _, part in ipairs(PARTS) do
    local value = entry.proxy[part]
    if type(value) == "table" then
      kong.log.set_serialize_value("ai.proxy." .. part, value)
    end
  end
end

-- The length of the longest end of `data` that begins `marker` (what may continue in the next chunk).
local function marker_prefix_at_end(data, marker)
  for n = math.min(#marker - 1, #data), 1, -1 do
    if data:sub(-n) == marker:sub(1, n) then
      return n
    end
  end
  return 0
end

function TollgateAnalytics:access(conf)
  kong.service.request.set_header(HEADER, "1")
end

function TollgateAnalytics:header_filter(conf)
  local value = kong.response.get_header(HEADER)
  if not value then
    return
  end
  kong.response.clear_header(HEADER)
  local entry = cjson.decode(value)
  record(entry)
  if type(entry) == "table" and entry.trailer == true and type(entry.nonce) == "string" and #entry.nonce >= 16 then
    kong.ctx.plugin.marker = MARKER .. entry.nonce .. " "
    kong.ctx.plugin.held = ""
  end
end

function TollgateAnalytics:body_filter(conf)
  local held, marker = kong.ctx.plugin.held, kong.ctx.plugin.marker
  if not held then
    return
  end
  local data = held .. (ngx.arg[1] or "")
  local eof = ngx.arg[2]
  local out
  local at = data:find(marker, 1, true)
  if at then
    local stop = data:find("\n\n", at + #marker, true)
    if stop then
      record(cjson.decode(data:sub(at + #marker, stop - 1)))
      out, held = data:sub(1, at - 1) .. data:sub(stop + 2), nil
    else
      out, held = data:sub(1, at - 1), data:sub(at)
    end
  else
    local keep = marker_prefix_at_end(data, marker)
    out, held = data:sub(1, #data - keep), data:sub(#data - keep + 1)
  end
  if eof and held then
    if held:sub(1, #marker) ~= marker then
      out = out .. held        -- not a trailer after all: it belongs to the body
    end
    held = nil                 -- a trailer cut short is dropped, never passed to the client
  end
  kong.ctx.plugin.held = held
  ngx.arg[1] = out
end

return TollgateAnalytics
