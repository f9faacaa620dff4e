// process::reserve_low_fds: every fd number a child is given (0..8) stays taken in the host,
// so no pipe the host makes later (Boost.Process's exec-error pipe included) can get one of
// them and be clobbered by the dup2 onto the child's fds.

#include "process/spawn.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace {

// In a child process (the test's own fds stay as they are): closes 0..8, reserves, and exits
// with 1 + the first fd of 0..8 still closed, 100 for a new pipe numbered <= 8, else 0.
int reserve_in_a_fresh_process() {
  pid_t pid = ::fork();
  if (pid == 0) {
    for (int fd = 0; fd <= 8; ++fd)
      ::close(fd);
    pyvisor::process::reserve_low_fds();
    for (int fd = 0; fd <= 8; ++fd)
      if (::fcntl(fd, F_GETFD) == -1)
        ::_exit(1 + fd);
    int p[2];
    if (::pipe(p) != 0 || p[0] <= 8 || p[1] <= 8)
      ::_exit(100);
    ::_exit(0);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

} // namespace

TEST(reserve_low_fds, fds_0_to_8_stay_taken_and_new_pipes_land_above_them) {
  EXPECT_EQ(reserve_in_a_fresh_process(), 0);
}
