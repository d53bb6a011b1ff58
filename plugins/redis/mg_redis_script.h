/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_script.h -- the server-side script that decides every layer of a
 * request in one round trip, atomically (Redis runs a script alone).
 *
 * KEYS: one counter per layer.  ARGV: eleven numbers per layer: algorithm
 * (mg_limit_algo), quota, window (us), burst, cost, shadow, max delay (us),
 * and for calendar windows the starts of the previous, current and next
 * windows and the end of the next, as the gateway's calendar puts them
 * around its own time (0 otherwise).  The clock is Redis's TIME, so
 * gateways whose clocks disagree still share one limit; only calendar
 * boundaries come from the gateway, which knows the zone.  Buckets (token,
 * leaky, GCRA) are kept as a theoretical arrival time, fixed windows as
 * "start:end:used", sliding windows as "start:used:previous", sliding logs
 * as the admission times.  Every key expires when its state would be fresh
 * again.
 *
 * Reply: { all enforced layers allowed (0/1), TIME in us, then per layer
 * allowed, remaining, reset us, retry-after us, delay us }.
 *
 * Lua numbers are doubles: times (about 2^51 us today) and counts are
 * exact; a bucket's arrival time keeps fractions of a microsecond only to
 * double precision, which is far below what a client can observe.
 */
#ifndef MG_REDIS_SCRIPT_H
#define MG_REDIS_SCRIPT_H

static const char mg_redis_decide_lua[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local n = #KEYS\n"
"local out = {0, now}\n"
"local ok_all, states, ttls, oks = 1, {}, {}, {}\n"
"local raws = redis.call('MGET', unpack(KEYS))\n"
"for i = 1, n do\n"
"  local b = (i - 1) * 11\n"
"  local algo, q, w = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])\n"
"  local burst, cost, shadow = tonumber(ARGV[b+4]), tonumber(ARGV[b+5]), tonumber(ARGV[b+6])\n"
"  local maxdelay = tonumber(ARGV[b+7])\n"
"  local c0, c1, c2, c3 = tonumber(ARGV[b+8]), tonumber(ARGV[b+9]), tonumber(ARGV[b+10]), tonumber(ARGV[b+11])\n"
"  local raw = raws[i]\n"
"  local ok, rem, reset, retry, delay, state, ttl = 0, 0, 0, 0, 0, nil, 1\n"
"  if algo == 1 or algo == 2 or algo == 6 then\n"
"    local T = w / q\n"
"    local tau = burst * T\n"
"    local tat = now\n"
"    if raw then tat = math.max(tonumber(raw), now) end\n"
"    local new = tat + cost * T\n"
"    local fits = cost <= burst and new - now <= tau * (1 + 1e-12)\n"
"    if algo == 2 and maxdelay > 0 then\n"
"      delay = math.ceil(tat - now)\n"
"      if delay > maxdelay then fits = false end\n"
"    end\n"
"    if fits then\n"
"      ok = 1\n"
"      state = string.format('%.17g', new)\n"
"      rem = math.floor((tau - (new - now)) / T + 1e-9)\n"
"      reset = math.ceil(new - now)\n"
"      ttl = math.ceil((new - now) / 1000) + 1\n"
"    else\n"
"      rem = math.floor((tau - (tat - now)) / T + 1e-9)\n"
"      reset = math.ceil(tat - now)\n"
"      if cost > burst then retry = w\n"
"      else\n"
"        retry = math.ceil(new - now - tau)\n"
"        if algo == 2 and maxdelay > 0 and delay - maxdelay > retry then retry = delay - maxdelay end\n"
"      end\n"
"      if retry < 1 then retry = 1 end\n"
"      delay = 0\n"
"    end\n"
"  elseif algo == 3 then\n"
"    local start, fin\n"
"    if c1 > 0 then\n"
"      if now < c1 then start, fin = c0, c1\n"
"      elseif now < c2 then start, fin = c1, c2\n"
"      else start, fin = c2, c3 end\n"
"    else\n"
"      start = now - (now % w)\n"
"      fin = start + w\n"
"    end\n"
"    local used = 0\n"
"    if raw then\n"
"      local s, f, u = string.match(raw, '^(%d+):(%d+):(%d+)$')\n"
"      if s and tonumber(s) >= start then start, fin, used = tonumber(s), tonumber(f), tonumber(u) end\n"
"    end\n"
"    if cost <= q and used + cost <= q then\n"
"      ok = 1\n"
"      used = used + cost\n"
"    elseif cost <= q then retry = fin - now\n"
"    else retry = fin - now + w end\n"
"    rem = q - used\n"
"    if used > 0 then reset = fin - now end\n"
"    state = string.format('%.17g:%.17g:%d', start, fin, used)\n"
"    ttl = math.ceil((fin - now) / 1000) + 1\n"
"  elseif algo == 4 then\n"
"    local log = {}\n"
"    if raw then\n"
"      for v in string.gmatch(raw, '%d+') do\n"
"        v = tonumber(v)\n"
"        if v + w > now then table.insert(log, v) end\n"
"      end\n"
"    end\n"
"    local count = #log\n"
"    local newest = now\n"
"    if count > 0 and log[count] > now then newest = log[count] end\n"
"    if cost <= q and count + cost <= q then\n"
"      ok = 1\n"
"      for j = 1, cost do table.insert(log, newest) end\n"
"      count = count + cost\n"
"    elseif cost <= q then retry = log[count + cost - q] + w - now\n"
"    else retry = w end\n"
"    rem = q - count\n"
"    if count > 0 then reset = log[count] + w - now end\n"
"    local parts = {}\n"
"    for j = 1, count do parts[j] = string.format('%.17g', log[j]) end\n"
"    state = table.concat(parts, ' ')\n"
"    if count > 0 then ttl = math.ceil((log[count] + w - now) / 1000) + 1 end\n"
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
"  table.insert(out, delay)\n"
"end\n"
"if ok_all == 1 then\n"
"  for i = 1, n do\n"
"    if oks[i] == 1 then\n"
"      if states[i] == '' then redis.call('DEL', KEYS[i])\n"
"      else redis.call('SET', KEYS[i], states[i], 'PX', ttls[i]) end\n"
"    end\n"
"  end\n"
"end\n"
"out[1] = ok_all\n"
"return out\n";

/*
 * Settling a token reservation (redis_settle): one call per request, every
 * layer whose count changes, in one script so no other decision sees half
 * of it.  KEYS: the counters.  ARGV: ten numbers per counter: algorithm,
 * quota, window (us), burst, delta (units to charge, or to give back when
 * negative), the start of the window that counted the reservation (the
 * window holding the decision's Redis time), and the calendar windows
 * around the gateway's time as the decide script takes them.  The clock is
 * Redis's TIME, as for deciding.  It does what mg_limit_charge and
 * mg_limit_refund do over the decide script's encodings:
 *
 *   buckets and GCRA (a theoretical arrival time): a charge pushes the
 *     arrival time on by the units' emission intervals, into debt of at
 *     most one bucket (a lead of two buckets over now); a refund pulls it
 *     back, never behind now (a full bucket: the key is deleted)
 *   fixed window: a charge fills the current window up to its quota; a
 *     refund comes off the window that counted the units while that window
 *     lasts, and never below 0
 *   sliding window counter: likewise, and a refund whose window has been
 *     followed by another comes off that one's "previous" count, which
 *     still weighs
 *
 * A counter that is gone (expired: fresh again) takes no refund.  Reply:
 * the number of counters written.  Running it twice would settle twice:
 * the caller never retries it (only a NOSCRIPT, where it did not run).
 */
static const char mg_redis_settle_lua[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local changed = 0\n"
"for i = 1, #KEYS do\n"
"  local b = (i - 1) * 10\n"
"  local algo, q, w = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])\n"
"  local burst, delta, rs = tonumber(ARGV[b+4]), tonumber(ARGV[b+5]), tonumber(ARGV[b+6])\n"
"  local c0, c1, c2, c3 = tonumber(ARGV[b+7]), tonumber(ARGV[b+8]), tonumber(ARGV[b+9]), tonumber(ARGV[b+10])\n"
"  local raw = redis.call('GET', KEYS[i])\n"
"  local state, ttl = nil, 0\n"
"  if algo == 1 or algo == 2 or algo == 6 then\n"
"    local T = w / q\n"
"    local tau = burst * T\n"
"    local lead = 0\n"
"    if raw then lead = math.max(tonumber(raw) - now, 0) end\n"
"    local new = lead\n"
"    if delta > 0 then\n"
"      new = math.min(lead + math.min(delta, 2 * burst) * T, 2 * tau)\n"
"      if new < lead then new = lead end\n"
"    elseif lead > 0 then\n"
"      new = math.max(lead + delta * T, 0)\n"
"    end\n"
"    if new ~= lead then\n"
"      if new > 0 then\n"
"        state = string.format('%.17g', now + new)\n"
"        ttl = math.ceil(new / 1000) + 1\n"
"      else\n"
"        state = ''\n"
"      end\n"
"    end\n"
"  elseif algo == 3 then\n"
"    local s, f, u\n"
"    if raw then s, f, u = string.match(raw, '^(%d+):(%d+):(%d+)$') end\n"
"    if s then s, f, u = tonumber(s), tonumber(f), tonumber(u) end\n"
"    if delta < 0 then\n"
"      if s and s == rs and f > now and u > 0 then\n"
"        u = u - math.min(-delta, u)\n"
"        state = string.format('%.17g:%.17g:%d', s, f, u)\n"
"        ttl = math.ceil((f - now) / 1000) + 1\n"
"      end\n"
"    else\n"
"      local start, fin\n"
"      if c1 > 0 then\n"
"        if now < c1 then start, fin = c0, c1\n"
"        elseif now < c2 then start, fin = c1, c2\n"
"        else start, fin = c2, c3 end\n"
"      else\n"
"        start = now - (now % w)\n"
"        fin = start + w\n"
"      end\n"
"      local used = 0\n"
"      if s and s >= start then start, fin, used = s, f, u end\n"
"      local take = math.min(delta, q - used)\n"
"      if take > 0 then\n"
"        state = string.format('%.17g:%.17g:%d', start, fin, used + take)\n"
"        ttl = math.ceil((fin - now) / 1000) + 1\n"
"      end\n"
"    end\n"
"  elseif algo == 5 then\n"
"    local s, c, p\n"
"    if raw then s, c, p = string.match(raw, '^(%d+):(%d+):(%d+)$') end\n"
"    if s then s, c, p = tonumber(s), tonumber(c), tonumber(p) end\n"
"    if delta < 0 then\n"
"      if s and s + 2 * w > now then\n"
"        if s == rs and c > 0 then c = c - math.min(-delta, c)\n"
"        elseif s == rs + w and p > 0 then p = p - math.min(-delta, p)\n"
"        else s = nil end\n"
"        if s then\n"
"          state = string.format('%.17g:%d:%d', s, c, p)\n"
"          ttl = math.ceil((s + 2 * w - now) / 1000) + 1\n"
"        end\n"
"      end\n"
"    else\n"
"      local start = now - (now % w)\n"
"      local cur, prev = 0, 0\n"
"      if s then\n"
"        if s >= start then start = s; cur = c; prev = p\n"
"        elseif s == start - w then prev = c end\n"
"      end\n"
"      local e = now - start\n"
"      if e < 0 then e = 0 end\n"
"      local rem = math.floor(q - (prev * (w - e) / w + cur) + 1e-9)\n"
"      local take = math.min(delta, rem)\n"
"      if take > 0 then\n"
"        state = string.format('%.17g:%d:%d', start, cur + take, prev)\n"
"        ttl = math.ceil((start + 2 * w - now) / 1000) + 1\n"
"      end\n"
"    end\n"
"  else\n"
"    return redis.error_reply('MGUNSUPPORTED algorithm ' .. tostring(algo))\n"
"  end\n"
"  if state == '' then\n"
"    redis.call('DEL', KEYS[i])\n"
"    changed = changed + 1\n"
"  elseif state then\n"
"    redis.call('SET', KEYS[i], state, 'PX', ttl)\n"
"    changed = changed + 1\n"
"  end\n"
"end\n"
"return changed\n";

/*
 * The local-sync exchange (mg_redis_sync.c): one call per batch of
 * counters.  KEYS: one total per counter and epoch, then this gateway's
 * heartbeat.  ARGV: per total the units to add and its expiry in ms, then
 * the heartbeat's expiry in ms (units may be negative: units given back
 * after they were pushed; a total that expired meanwhile stays at 0 rather
 * than going below).  Reply: the totals, in order.  The
 * heartbeat counts the gateway's exchanges, so `KEYS {mg}s:gw:*` lists the
 * gateways that synchronise and GET tells how often.
 */
static const char mg_redis_sync_lua[] =
"local n = #KEYS - 1\n"
"local out = {}\n"
"for i = 1, n do\n"
"  out[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])\n"
"  if out[i] < 0 then\n"
"    redis.call('SET', KEYS[i], 0)\n"
"    out[i] = 0\n"
"  end\n"
"  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])\n"
"end\n"
"redis.call('INCR', KEYS[n + 1])\n"
"redis.call('PEXPIRE', KEYS[n + 1], ARGV[2 * n + 1])\n"
"return out\n";

#endif /* MG_REDIS_SCRIPT_H */
