-- Groups (issue 14). A group message writes a constant number of rows whatever the group's size:
-- its group's counter, one group_messages row, one group_mentions row per named mention, and
-- versions. Members' counts are composed on read from positions (counters/counters.ts).

-- Per group: the seq of its newest counted message and the version of the group's state. An
-- operator may add a CHECK (e.g. last_seq <= 3): the next group send that would break it fails.
create table if not exists group_counters (
  group_id uuid primary key,
  last_seq bigint not null default 0,
  version bigint not null default 0
);

-- Every counted group message, by its place in the group. `deleted`: deleted by its sender, or a
-- counted send that was cancelled; it then counts for no one.
create table if not exists group_messages (
  group_id uuid not null,
  seq bigint not null,
  message_id uuid not null,
  sender_id uuid not null,
  mentions_all boolean not null default false,
  deleted boolean not null default false,
  primary key (group_id, seq)
);

create index if not exists group_messages_by_sender on group_messages (group_id, sender_id, seq);
create index if not exists group_messages_deleted on group_messages (group_id, seq) where deleted;
create index if not exists group_messages_to_all on group_messages (group_id, seq)
  where mentions_all and not deleted;

-- One row per user a group message names (never its sender).
create table if not exists group_mentions (
  user_id uuid not null,
  group_id uuid not null,
  seq bigint not null,
  primary key (user_id, group_id, seq)
);

-- Each user's place in each group as dialogs last told it; the newest `version` wins.
create table if not exists group_members (
  user_id uuid not null,
  group_id uuid not null,
  member boolean not null,
  joined_seq bigint not null,
  read_seq bigint not null,
  muted boolean not null,
  version bigint not null,
  primary key (user_id, group_id)
);

create index if not exists group_members_by_group on group_members (group_id);

-- Dialogs a user muted, as dialogs last told it; the newest `version` wins.
create table if not exists dialog_mutes (
  user_id uuid not null,
  peer_id uuid not null,
  muted boolean not null,
  version bigint not null,
  primary key (user_id, peer_id)
);

-- The ledger also holds group sends (user = sender, peer = group, delta 0, the seq they were given)
-- and dialog deletes (a -1 for the recipient, applied once, like a read).
alter table ledger add column if not exists seq bigint;
alter table ledger drop constraint if exists ledger_kind_check;
alter table ledger add constraint ledger_kind_check
  check (kind in ('send', 'read', 'group_send', 'delete'));
