"""mailfort: a mail platform for providers that run mail for many customers.

Nodes are interchangeable workers over a shared store; see DESIGN.md for the layers.
"""

__version__ = "0.1.0"
