-- The outbox stores the event type; the relay computes the subject from its own prefix. Rows written
-- before keep their subject and are published on it.
alter table outbox add column if not exists type text;
alter table outbox alter column subject drop not null;
alter table outbox drop constraint if exists outbox_type_or_subject;
alter table outbox add constraint outbox_type_or_subject check (type is not null or subject is not null);

-- A relay claims a batch for a short lease and publishes it outside any transaction; a row whose
-- lease ran out (its relay died) is claimed again by another.
alter table outbox add column if not exists claimed_until timestamptz;
