"""Console pages: work. Each module here has a ``router``; ``routers`` lists them.

* ``projects.py``  the projects list, a new project, a project's page with its members
* ``board.py``     a project's task board (moving a card is an update with its version)
* ``task_pages.py`` a task's page: edit, assignees, comments, time logged on it
* ``time_pages.py`` a project's time entries and totals
* ``edit_pages.py`` editing one's comment, a time entry
* ``finance.py``   a project's budget; invoices (a project's and the tenant's)
"""

from __future__ import annotations

from fastapi import APIRouter

from kanvaro.web.console.work import (
    board,
    edit_pages,
    finance,
    projects,
    task_pages,
    time_pages,
)

routers: list[APIRouter] = [
    projects.router,
    board.router,
    task_pages.router,
    time_pages.router,
    edit_pages.router,
    finance.router,
]
