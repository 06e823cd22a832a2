-- Unread counters per (user, peer), the per-user version that orders cache writes, and the ledger
-- that makes every saga step idempotent.
create table if not exists unread_counters (
  user_id uuid not null,
  peer_id uuid not null,
  unread integer not null default 0,
  updated_at timestamptz not null default now(),
  primary key (user_id, peer_id)
);

create table if not exists counter_versions (
  user_id uuid primary key,
  version bigint not null
);

-- One row per saga transaction: a redelivered event finds its row and changes nothing.
-- `delta` is what the row contributes to unread_counters now, so for every (user, peer) the counter
-- equals the sum of its ledger deltas; the reconciler repairs any pair where it does not.
create table if not exists ledger (
  transaction_id uuid primary key,
  kind text not null check (kind in ('send', 'read')),
  user_id uuid not null,
  peer_id uuid not null,
  message_id uuid,
  outcome text not null check (outcome in ('counted', 'failed', 'cancelled', 'read')),
  delta integer not null,
  reason text,
  reply_event_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index if not exists ledger_by_pair on ledger (user_id, peer_id);
