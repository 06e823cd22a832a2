-- The transactional outbox: events written in the same transaction as the state they describe.
create table if not exists outbox (
  id uuid primary key,
  subject text not null,
  payload jsonb not null,
  request_id text,
  created_at timestamptz not null default clock_timestamp(),
  sent_at timestamptz
);

create index if not exists outbox_unsent on outbox (created_at) where sent_at is null;
create index if not exists outbox_sent on outbox (sent_at) where sent_at is not null;
