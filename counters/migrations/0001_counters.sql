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
create table if not exists ledger (
  transaction_id uuid primary key,
  message_id uuid not null,
  user_id uuid not null,
  peer_id uuid not null,
  outcome text not null check (outcome in ('counted', 'failed')),
  reason text,
  reply_event_id uuid not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
