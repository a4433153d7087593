"""ocrq's shared kernel: settings, errors, schemas and the database.

Both ``api`` (how jobs come in) and ``worker`` (how jobs get done) import this
package; it imports neither, so either side can be deployed alone.
"""

__version__ = "0.1.0"
