-- Messages and their saga state: pending until counters answers, then committed or failed.
create table if not exists messages (
  id uuid primary key,
  transaction_id uuid not null unique,
  sender_id uuid not null,
  recipient_id uuid not null,
  text text not null,
  status text not null default 'pending' check (status in ('pending', 'committed', 'failed')),
  failure_reason text,
  idempotency_key text,
  request_id text,
  created_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  read_at timestamptz,
  check (sender_id <> recipient_id)
);

create unique index if not exists messages_idempotency
  on messages (sender_id, idempotency_key) where idempotency_key is not null;
create index if not exists messages_by_sender on messages (sender_id, recipient_id, created_at desc);
create index if not exists messages_by_recipient
  on messages (recipient_id, sender_id, created_at desc) where status = 'committed';
create index if not exists messages_pending on messages (created_at) where status = 'pending';
create index if not exists messages_unread
  on messages (recipient_id, sender_id, created_at) where status = 'committed' and read_at is null;
