-- Runs once, when the Postgres volume is first created. The services would create these too.
create database dialogs;
create database counters;
