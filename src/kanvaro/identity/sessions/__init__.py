"""Sessions: tenant session policies, devices, activity, step-up and sign-in risk (issue 10)."""
