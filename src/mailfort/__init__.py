"""mailfort: a mail platform for providers that run mail for many customers.

Nodes are interchangeable workers over a shared store; see DESIGN.md for the layers. This module
holds only the version; it imports nothing, so every layer may import it.
"""

__version__ = "0.1.0"
