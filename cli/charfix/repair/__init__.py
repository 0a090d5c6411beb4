"""The write side: one function per plan step, the one-job and page strategies, the operations the
commands call, and the audit log every write passes through."""
