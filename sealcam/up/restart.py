"""When a supervised service exits unexpectedly: restart it after an exponential backoff, or give up.

Pure: the caller says how long the process ran and how it exited; `RestartTracker` remembers consecutive
failures. A run that lasted `stable_after_s` resets the count. An exit code in `fatal_codes` (2: usage or
config error) is not worth retrying, and neither is a crash loop of more than `max_failures` fast failures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    stable_after_s: float = 60.0
    max_failures: int = 10
    fatal_codes: tuple[int, ...] = (2,)

    def delay(self, failures: int) -> float:
        """Backoff before restart number `failures` (1-based)."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay_s: float
    reason: str


@dataclass
class RestartTracker:
    policy: RestartPolicy
    failures: int = 0  # consecutive fast failures

    def on_exit(self, returncode: int, ran_for_s: float) -> Decision:
        p = self.policy
        if ran_for_s >= p.stable_after_s:
            self.failures = 0
        self.failures += 1
        if returncode in p.fatal_codes:
            return Decision(False, 0.0, f"exited with code {returncode} (usage or config error); not restarting")
        if self.failures > p.max_failures:
            return Decision(False, 0.0, f"failed {self.failures} times in a row, each within "
                            f"{p.stable_after_s:g} s of starting; giving up")
        d = p.delay(self.failures)
        return Decision(True, d, f"exited with code {returncode} after {ran_for_s:.1f} s; "
                        f"restart {self.failures} in {d:g} s")
