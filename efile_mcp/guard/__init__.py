"""The guard: path policy, plans with sealed confirmation tokens, and the audit log.

Every destructive call goes through `plans.RemovalGuard`; nothing else imports the client's removal module.
"""
