-- The W3C traceparent of the span that wrote the row (null with tracing off): the relay's publish
-- continues that trace, also after a relay restart.
alter table outbox add column if not exists traceparent text;
