"""storeflow: storage operations and data movement as Prefect 3 flows.

The one import name storeflow claims.  Its subpackages are the repository's
top-level folders (linked here): `flows` (deployment entry points), `tasks`
(the steps), `blocks` (configuration), `sandbox` (user callbacks), `models`
(the domain) and `cli` (the command line and the warm runner).
"""
