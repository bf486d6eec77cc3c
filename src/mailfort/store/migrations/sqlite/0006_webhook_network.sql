-- The client network (/24 or /64) that subscribed a webhook over the public API, so that no one
-- network can hold more than its share of the subscriptions; '' for the operator's own.
ALTER TABLE status_webhooks ADD COLUMN network TEXT NOT NULL DEFAULT '';
CREATE INDEX status_webhooks_network ON status_webhooks(network);
