"""The ground floor: helpers every app uses (settings readers, errors, money, the database's hot path, Redis,
API keys from headers, hosted images and their signed URLs, the request id, background work by name).

It imports no app of the project: everything else stands on it.
"""
