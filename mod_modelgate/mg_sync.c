/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_sync.c -- local-sync bookkeeping (see mg_sync.h for the model and the
 * over-admission bound).
 */
#include <string.h>
#include "mg_sync.h"
#include "mg_table.h"

/* Layout: header, slots, then the list of listed slots' indexes. */
static apr_size_t header_bytes(void)
{
    return (sizeof(mg_sync_header) + 63) & ~(apr_size_t)63;
}

apr_size_t mg_sync_bytes(apr_uint32_t nslots)
{
    return header_bytes() + (apr_size_t)nslots * sizeof(mg_sync_slot)
           + (apr_size_t)nslots * sizeof(apr_uint32_t);
}

void mg_sync_format(void *mem, apr_uint32_t nslots)
{
    mg_sync_header *hdr = mem;

    memset(mem, 0, mg_sync_bytes(nslots));
    hdr->nslots = nslots;
    hdr->magic = MG_SYNC_MAGIC;
}

int mg_sync_attach(mg_sync *s, mg_table *t, void *mem, apr_size_t size)
{
    mg_sync_header *hdr = mem;

    if (size < header_bytes() || hdr->magic != MG_SYNC_MAGIC
        || hdr->nslots != mg_table_slots(t)
        || size < mg_sync_bytes(hdr->nslots)
        || hdr->nlisted > hdr->nslots) {
        return 0;
    }
    s->hdr = hdr;
    s->slots = (mg_sync_slot *)((char *)mem + header_bytes());
    s->list = (apr_uint32_t *)(s->slots + hdr->nslots);
    t->sync = s;
    return 1;
}

/* The epoch of `spec` that contains `wall` (see mg_sync.h). */
static void epoch_of(const mg_limit_spec *spec, apr_time_t wall,
                     apr_time_t *start, apr_time_t *end)
{
    apr_interval_time_t len;

    switch (spec->algo) {
    case MG_ALGO_FIXED_WINDOW:
    case MG_ALGO_SLIDING_WINDOW:
        mg_limit_window_bounds(spec, wall, start, end);
        return;
    case MG_ALGO_TOKEN_BUCKET:
    case MG_ALGO_LEAKY_BUCKET:
    case MG_ALGO_GCRA:
        /* The time an empty bucket takes to fill. */
        len = (apr_interval_time_t)(spec->capacity / spec->refill_per_us);
        if (len < APR_USEC_PER_SEC) {
            len = APR_USEC_PER_SEC;
        }
        break;
    default:
        len = spec->window;
        break;
    }
    *start = wall - (wall % len);
    *end = *start + len;
}

void mg_sync_reset(mg_sync *s, apr_uint32_t index)
{
    mg_sync_slot *slot = &s->slots[index];
    apr_uint32_t listed = slot->listed;

    /* The index may still be in the list: that stays true, and collect
     * sees the new counter there. */
    memset(slot, 0, sizeof(*slot));
    slot->listed = listed;
}

apr_time_t mg_sync_settle(mg_sync *s, apr_uint32_t index,
                          const mg_limit_spec *spec, mg_now now,
                          mg_limit_state *state)
{
    mg_sync_slot *slot = &s->slots[index];
    apr_time_t expires;

    if (slot->epoch_end && now.wall >= slot->epoch_end) {
        /* A new epoch has a total of its own.  What the others used in a
         * fixed window that has ended no longer counts; for the others the
         * owed units are recent use and are still charged. */
        epoch_of(spec, now.wall, &slot->epoch_start, &slot->epoch_end);
        slot->pushed = 0;
        slot->remote = 0;
        if (slot->pending < 0) {
            /* Units given back were in the ended epoch's total. */
            slot->pending = 0;
        }
        if (spec->algo == MG_ALGO_FIXED_WINDOW) {
            slot->owed = 0;
        }
    }
    if (!slot->owed) {
        return 0;
    }
    expires = mg_limit_charge(spec, state, mg_limit_clock(spec, &now),
                              slot->owed);
    s->hdr->units_owed += slot->owed;
    slot->owed = 0;
    return expires;
}

static void list_slot(mg_sync *s, apr_uint32_t index)
{
    if (!s->slots[index].listed) {
        s->slots[index].listed = 1;
        s->list[s->hdr->nlisted++] = index;
    }
}

void mg_sync_commit(mg_sync *s, apr_uint32_t index,
                    const mg_limit_spec *spec, mg_now now, apr_uint64_t cost)
{
    mg_sync_slot *slot = &s->slots[index];

    if (!slot->epoch_end) {
        epoch_of(spec, now.wall, &slot->epoch_start, &slot->epoch_end);
    }
    slot->pending += (apr_int64_t)cost;
    list_slot(s, index);
}

void mg_sync_refund(mg_sync *s, apr_uint32_t index, mg_now then,
                    apr_uint64_t units)
{
    mg_sync_slot *slot = &s->slots[index];
    apr_int64_t floor;

    if (!slot->epoch_end) {
        return;                 /* nothing committed here to give back */
    }
    /* What was pushed into the current epoch can come off its total, if
     * the units were charged in it; what is pending can always go (units
     * of an ended epoch pending are pushed into this one). */
    floor = then.wall >= slot->epoch_start ? -(apr_int64_t)slot->pushed : 0;
    if (slot->pending - floor <= 0) {
        return;
    }
    slot->pending = slot->pending - floor > (apr_int64_t)units
                    ? slot->pending - (apr_int64_t)units : floor;
    list_slot(s, index);
}

int mg_sync_due(mg_sync *s, apr_time_t now_mono,
                apr_interval_time_t interval)
{
    if (now_mono < s->hdr->next_exchange) {
        return 0;
    }
    s->hdr->next_exchange = now_mono + interval;
    return 1;
}

static int fp_equal(const mg_fingerprint *a, const mg_fingerprint *b)
{
    return a->hi == b->hi && a->lo == b->lo;
}

apr_size_t mg_sync_collect(mg_table *t, apr_uint32_t table_no, mg_now now,
                           apr_interval_time_t interval,
                           mg_sync_item *items, apr_size_t max)
{
    mg_sync *s = t->sync;
    apr_size_t n = 0, seen = 0, todo = s->hdr->nlisted;
    apr_uint32_t k = todo ? s->hdr->cursor % s->hdr->nlisted : 0;

    while (seen < todo && n < max && s->hdr->nlisted > 0) {
        apr_uint32_t index = s->list[k];
        mg_sync_slot *slot = &s->slots[index];
        mg_table_entry *e = mg_table_entry_at(t, index);

        seen++;
        if (!slot->pending
            && (now.mono >= e->expires || now.wall >= slot->epoch_end)) {
            /* Nothing to tell and nothing left to learn: the state is
             * fresh, or its epoch is over.  Its next commit lists it
             * again.  The last index moves here; look at k again. */
            slot->listed = 0;
            s->list[k] = s->list[--s->hdr->nlisted];
            if (k >= s->hdr->nlisted) {
                k = 0;
            }
            continue;
        }
        items[n].fp = e->fp;
        items[n].table = table_no;
        items[n].index = index;
        items[n].units = slot->pending;
        items[n].epoch_start = slot->epoch_start;
        /* The total outlives its epoch by a few intervals, so a late push
         * still finds the others' units. */
        items[n].ttl_ms = (slot->epoch_end - now.wall
                           + 2 * interval + APR_USEC_PER_SEC) / 1000;
        items[n].total = 0;
        /* Net: a negative push takes refunded units off the total.  The
         * figure for the metrics only grows (a Prometheus counter): units
         * taken back are not subtracted from it. */
        slot->pushed += (apr_uint64_t)slot->pending;
        if (slot->pending > 0) {
            s->hdr->units_pushed += (apr_uint64_t)slot->pending;
        }
        slot->pending = 0;
        n++;
        k = (k + 1) % s->hdr->nlisted;
    }
    s->hdr->cursor = k;
    s->hdr->exchanges++;
    return n;
}

void mg_sync_apply(mg_table *t, apr_uint32_t table_no,
                   const mg_sync_item *items, apr_size_t n, int ok)
{
    mg_sync *s = t->sync;
    apr_size_t i;

    if (!ok) {
        s->hdr->failures++;
    }
    for (i = 0; i < n; i++) {
        const mg_sync_item *it = &items[i];
        mg_sync_slot *slot;

        if (it->table != table_no || it->index >= s->hdr->nslots
            || !fp_equal(&mg_table_entry_at(t, it->index)->fp, &it->fp)) {
            continue;           /* another table's, or evicted since */
        }
        slot = &s->slots[it->index];
        if (!ok) {
            /* Pushed when the exchange works again (into the epoch then
             * current, if this one has ended). */
            if (slot->epoch_start == it->epoch_start) {
                slot->pushed -= (apr_uint64_t)it->units;
                slot->pending += it->units;
            }
            else if (it->units > 0) {
                slot->pending += it->units;
            }
            if (slot->pending) {
                list_slot(s, it->index);
            }
            continue;
        }
        if (slot->epoch_start != it->epoch_start) {
            continue;           /* its epoch ended meanwhile */
        }
        if (it->total < slot->pushed) {
            /* The total lost units we pushed: the store lost the key
             * (restarted, flushed, evicted).  Count from what it has. */
            slot->pushed = it->total;
            slot->remote = 0;
        }
        else if (it->total - slot->pushed > slot->remote) {
            apr_uint64_t others = it->total - slot->pushed;
            slot->owed += others - slot->remote;
            slot->remote = others;
        }
        else if (it->total - slot->pushed < slot->remote && slot->owed) {
            /* Another gateway gave units back (mg_sync_refund): those
             * not charged here yet are not owed.  Those charged stay. */
            apr_uint64_t back = slot->remote - (it->total - slot->pushed);
            if (back > slot->owed) {
                back = slot->owed;
            }
            slot->owed -= back;
            slot->remote -= back;
        }
    }
}
