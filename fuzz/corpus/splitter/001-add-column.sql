-- 0003: a new column, filled from existing data before it becomes NOT NULL.
ALTER TABLE shop.customers ADD COLUMN email_domain text;
