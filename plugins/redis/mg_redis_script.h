/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_script.h -- the server-side script that decides every layer of a
 * request in one round trip, atomically (Redis runs a script alone).
 *
 * KEYS: one counter per layer.  ARGV: six numbers per layer: algorithm
 * (mg_limit_algo), quota, window (us), burst, cost, shadow.  The clock is
 * Redis's TIME, so gateways whose clocks disagree still share one limit.
 * Buckets (token, leaky as a meter, GCRA) are kept as a theoretical arrival
 * time; windows as "start:used[:previous]".  Every key expires when its
 * state would be fresh again.
 *
 * Reply: { all enforced layers allowed (0/1), TIME in us, then per layer
 * allowed, remaining, reset us, retry-after us }.
 *
 * Lua numbers are doubles: times (about 2^51 us today) and counts are
 * exact; a bucket's arrival time keeps fractions of a microsecond only to
 * double precision, which is far below what a client can observe.
 */
#ifndef MG_REDIS_SCRIPT_H
#define MG_REDIS_SCRIPT_H

static const char mg_redis_script[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local n = #KEYS\n"
"local out = {0, now}\n"
"local ok_all, states, ttls, oks = 1, {}, {}, {}\n"
"for i = 1, n do\n"
"  local b = (i - 1) * 6\n"
"  local algo, q, w = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])\n"
"  local burst, cost, shadow = tonumber(ARGV[b+4]), tonumber(ARGV[b+5]), tonumber(ARGV[b+6])\n"
"  local raw = redis.call('GET', KEYS[i])\n"
"  local ok, rem, reset, retry, state, ttl = 0, 0, 0, 0, nil, 1\n"
"  if algo == 1 or algo == 2 or algo == 6 then\n"
"    local T = w / q\n"
"    local tau = burst * T\n"
"    local tat = now\n"
"    if raw then tat = math.max(tonumber(raw), now) end\n"
"    local new = tat + cost * T\n"
"    if cost <= burst and new - now <= tau * (1 + 1e-12) then\n"
"      ok = 1\n"
"      state = string.format('%.17g', new)\n"
"      rem = math.floor((tau - (new - now)) / T + 1e-9)\n"
"      reset = math.ceil(new - now)\n"
"      ttl = math.ceil((new - now) / 1000) + 1\n"
"    else\n"
"      rem = math.floor((tau - (tat - now)) / T + 1e-9)\n"
"      reset = math.ceil(tat - now)\n"
"      if cost <= burst then retry = math.ceil(new - now - tau) else retry = w end\n"
"      if retry < 1 then retry = 1 end\n"
"    end\n"
"  elseif algo == 3 then\n"
"    local start = now - (now % w)\n"
"    local used = 0\n"
"    if raw then\n"
"      local s, u = string.match(raw, '^(%d+):(%d+)$')\n"
"      if s and tonumber(s) >= start then start = tonumber(s); used = tonumber(u) end\n"
"    end\n"
"    if cost <= q and used + cost <= q then\n"
"      ok = 1\n"
"      used = used + cost\n"
"    elseif cost <= q then retry = start + w - now\n"
"    else retry = start + 2 * w - now end\n"
"    rem = q - used\n"
"    if used > 0 then reset = start + w - now end\n"
"    state = string.format('%.17g:%d', start, used)\n"
"    ttl = math.ceil((start + w - now) / 1000) + 1\n"
"  elseif algo == 5 then\n"
"    local start = now - (now % w)\n"
"    local cur, prev = 0, 0\n"
"    if raw then\n"
"      local s, c, p = string.match(raw, '^(%d+):(%d+):(%d+)$')\n"
"      if s then\n"
"        s = tonumber(s)\n"
"        if s >= start then start = s; cur = tonumber(c); prev = tonumber(p)\n"
"        elseif s == start - w then prev = tonumber(c) end\n"
"      end\n"
"    end\n"
"    local e = now - start\n"
"    if e < 0 then e = 0 end\n"
"    local used = prev * (w - e) / w + cur\n"
"    if cost <= q and used + cost <= q then\n"
"      ok = 1\n"
"      cur = cur + cost\n"
"      used = used + cost\n"
"    elseif cost > q then retry = w\n"
"    elseif cur + cost <= q and prev > 0 then\n"
"      retry = math.ceil(w - (q - cur - cost) * w / prev - e)\n"
"    else\n"
"      local extra = 0\n"
"      if cur > 0 then extra = math.ceil(w - (q - cost) * w / cur) end\n"
"      if extra < 0 then extra = 0 end\n"
"      retry = start + w - now + extra\n"
"    end\n"
"    if ok == 0 and retry < 1 then retry = 1 end\n"
"    rem = math.floor(q - used + 1e-9)\n"
"    if rem < 0 then rem = 0 end\n"
"    if cur > 0 then reset = start + 2 * w - now elseif prev > 0 then reset = start + w - now end\n"
"    state = string.format('%.17g:%d:%d', start, cur, prev)\n"
"    ttl = math.ceil((start + 2 * w - now) / 1000) + 1\n"
"  else\n"
"    return redis.error_reply('MGUNSUPPORTED algorithm ' .. tostring(algo))\n"
"  end\n"
"  oks[i], states[i], ttls[i] = ok, state, ttl\n"
"  if ok == 0 and shadow == 0 then ok_all = 0 end\n"
"  table.insert(out, ok)\n"
"  table.insert(out, rem)\n"
"  table.insert(out, reset)\n"
"  table.insert(out, retry)\n"
"end\n"
"if ok_all == 1 then\n"
"  for i = 1, n do\n"
"    if oks[i] == 1 then redis.call('SET', KEYS[i], states[i], 'PX', ttls[i]) end\n"
"  end\n"
"end\n"
"out[1] = ok_all\n"
"return out\n";

#endif /* MG_REDIS_SCRIPT_H */
