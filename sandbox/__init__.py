"""User callbacks (Nodeum style) run isolated: Python in a bubblewrap +
Landlock + seccomp jail, JavaScript in a permissionless deno.

The transfer engine uses `sandbox.stages.CallbackSet`; the CLI is
`sandbox.cli.callback_app`. Importing this package imports nothing else, so
the jailed runtime (`sandbox.pyworker`) stays free of host dependencies.
"""
