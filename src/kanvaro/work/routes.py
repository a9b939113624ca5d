"""All routers of the work domain, in the order they are mounted."""

from kanvaro.work import budget, comments, invoices, projects, tasks, time_entries

routers = [
    projects.router,
    tasks.router,
    comments.router,
    time_entries.router,
    budget.router,
    invoices.router,
]
