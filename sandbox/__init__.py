"""User callbacks (Nodeum style) run isolated, each language its own way:
Python in a bubblewrap + Landlock + seccomp jail, JavaScript in a
permissionless deno (sandbox/languages/ holds one module per language and the
registry the rest of the sandbox reads).

The transfer engine uses `sandbox.stages.CallbackSet`; the CLI is
`cli/callbacks.py`. Importing this package imports nothing else, so the
jailed runtime (`sandbox.pyworker`) stays free of host dependencies.
"""
