-- Which Redis generation the cache entries belong to (counters/coherence.ts). `stamp` names the
-- namespace of the entries; `redis_run_id` is the Redis process it was stamped on, or null when the
-- cache is unsafe (a write failed, an instance died with a change not yet cached) and must be
-- stamped anew before anyone reads Redis again. Kept in Postgres, so it survives any crash and a
-- Redis that comes back older cannot vouch for itself.
create table if not exists cache_generation (
  singleton boolean primary key default true check (singleton),
  stamp text not null,
  redis_run_id text,
  changed_at timestamptz not null default now()
);

insert into cache_generation (stamp) values (replace(gen_random_uuid()::text, '-', ''))
on conflict do nothing;

-- Counters instances alive now, each with its last heartbeat. One that stops beating died without
-- finishing its work (kill -9), and the changes it had committed but not yet cached make the cache
-- unsafe.
create table if not exists cache_instances (
  id uuid primary key,
  heartbeat_at timestamptz not null default now()
);
