"""Code that runs inside the sandbox (shipped as files, never imported by the service): the agent."""
