-- A dialog message is the durable record of its `dialogs.message.sent` event (no outbox row): the
-- sweeper republishes a pending one whose event may not have got out, and notes when here, so a
-- slow saga is not republished at every tick.
alter table messages add column if not exists republished_at timestamptz;
