"""All routers of the work domain, in the order they are mounted."""

from kanvaro.work import projects

routers = [projects.router]
