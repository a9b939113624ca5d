"""The ``kanvaro keys|secrets|audit`` sub-commands. Entry points, like ``kanvaro.cli``: they
may reach every domain, and no domain imports them."""
