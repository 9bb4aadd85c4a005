COPY t FROM stdin;
1	2
\.
SELECT $a$ x $a$; /* /* */ */ E'\''; \c x
