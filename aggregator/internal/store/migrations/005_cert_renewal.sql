-- 005: agent certificate renewal. prev_cert_serial is the certificate an
-- agent renewed with: it stays valid beside cert_serial until the agent
-- connects with the new certificate, so that an agent that stopped before
-- saving the new one can still connect, with the old one, and renew again.
-- NULL when there is no renewal in progress.
ALTER TABLE agents ADD COLUMN prev_cert_serial text;
