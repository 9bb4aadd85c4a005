-- Data migration (DML): every existing customer gets its domain.
UPDATE shop.customers
   SET email_domain = lower(split_part(email, '@', 2))
 WHERE email_domain IS NULL;

ALTER TABLE shop.customers ALTER COLUMN email_domain SET NOT NULL;
