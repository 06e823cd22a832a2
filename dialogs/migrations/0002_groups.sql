-- Groups: conversations of many members. A group message gets its `seq` (its place in the group's
-- order) from counters when it is counted; groups.last_committed_seq is the greatest committed seq.
create table if not exists groups (
  id uuid primary key,
  title text not null check (char_length(title) between 1 and 200),
  owner_id uuid not null,
  created_at timestamptz not null default clock_timestamp(),
  last_committed_seq bigint not null default 0
);

-- A member's state: a leave or removal keeps the row with member = false. `version` goes up with
-- every change, so counters keeps the newest state whatever order the events arrive in.
create table if not exists group_members (
  group_id uuid not null references groups (id),
  user_id uuid not null,
  member boolean not null default true,
  joined_seq bigint not null default 0,
  read_seq bigint not null default 0,
  muted boolean not null default false,
  version bigint not null default 1,
  primary key (group_id, user_id)
);
create index if not exists group_members_by_user on group_members (user_id) where member;

-- A message belongs to a dialog (recipient_id) or to a group (group_id), never both. 'deleted' is
-- a committed message its sender deleted.
alter table messages
  alter column recipient_id drop not null,
  add column if not exists group_id uuid references groups (id),
  add column if not exists seq bigint,
  add column if not exists mentions uuid[] not null default '{}',
  add column if not exists mentions_all boolean not null default false,
  add column if not exists deleted_at timestamptz,
  drop constraint if exists messages_status_check,
  add constraint messages_status_check
    check (status in ('pending', 'committed', 'failed', 'deleted')),
  add constraint messages_one_conversation check ((recipient_id is null) <> (group_id is null));

create index if not exists messages_by_group
  on messages (group_id, created_at desc, id desc) where group_id is not null;
create index if not exists messages_group_seq
  on messages (group_id, seq) where seq is not null;

-- Dialog mutes, with a version as for group members.
create table if not exists dialog_mutes (
  user_id uuid not null,
  peer_id uuid not null,
  muted boolean not null,
  version bigint not null,
  primary key (user_id, peer_id)
);
