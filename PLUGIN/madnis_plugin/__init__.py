"""madnis_plugin: MadNIS inside MG5aMC (``output madnis DIR``, ``launch``), the built-in demo and the CLI.

Only the ``mg5`` subpackage imports MG5aMC; it is loaded here when MG5aMC imports this plugin.
"""
