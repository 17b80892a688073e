"""Names the serving layer shares between its modules, kept free of heavy imports.

`biomed serve status` reads the app's name without importing the model stack (torch,
transformers) that `serving.app` needs.
"""

# The Serve application every deploy replaces (one app, every model multiplexed in it).
APP_NAME = "biomed"
