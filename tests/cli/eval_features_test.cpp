// `pyvisor eval`'s local features through the real program: -f FILE, --cwd, --path, --raw,
// SystemExit as the exit status, and `pyvisor --version`.

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_test_util.hpp"

namespace {

namespace fs = std::filesystem;
using pyvisor::cli_test::describe;
using pyvisor::cli_test::pyvisor;
using pyvisor::cli_test::temp_dir;
using pyvisor::cli_test::write_file;

TEST(EvalFile, RunsTheFileAndTracebacksNameIt) {
  temp_dir dir;
  write_file(dir / "ok.py", "import sys\nx = 20\nreturn x + 22\n");
  auto r = pyvisor({"eval", "-f", dir / "ok.py"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "42\n");
  // A failing file: the traceback names the file and line, with its source line.
  write_file(dir / "bad.py", "x = 1\n\ndef f():\n    return 1 / 0\n\nf()\n");
  r = pyvisor({"eval", "--file", dir / "bad.py"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("File \"" + (dir / "bad.py") + "\", line 6, in <module>"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("File \"" + (dir / "bad.py") + "\", line 4, in f\n    return 1 / 0"),
            std::string::npos)
      << r.err;
  // --json carries the same traceback.
  r = pyvisor({"eval", "--json", "-f", dir / "bad.py"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.out.find("File \\\"" + (dir / "bad.py") + "\\\", line 6"), std::string::npos) << r.out;
  // A syntax error names the file too.
  write_file(dir / "syntax.py", "x = 1\nx = (\n");
  r = pyvisor({"eval", "-f", dir / "syntax.py"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("error: syntax_error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dir / "syntax.py"), std::string::npos) << r.err;
  // Not UTF-8: a usage error.
  write_file(dir / "latin1.py", "return '\xe9'\n");
  r = pyvisor({"eval", "-f", dir / "latin1.py"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_NE(r.err.find("is not valid UTF-8"), std::string::npos) << r.err;
  // A directory cannot be read as code.
  r = pyvisor({"eval", "-f", dir.path()});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_NE(r.err.find("-f: cannot read"), std::string::npos) << r.err;
}

TEST(EvalCwd, SetsTheInterpretersWorkingDirectory) {
  temp_dir dir;
  fs::create_directories(dir / "work");
  write_file(dir / "work/data.txt", "hello");
  auto r = pyvisor({"eval", "--cwd", dir / "work",
                    "import os\nreturn [os.getcwd(), open('data.txt').read()]"});
  EXPECT_EQ(r.status, 0) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(fs::canonical(doc[0].get<std::string>()), fs::canonical(dir / "work"));
  EXPECT_EQ(doc[1], "hello");
  // -f with a relative FILE and --cwd: the file is read here and named by its absolute path
  // (so the interpreter, elsewhere, still finds the source lines it shows).
  write_file(dir / "f.py", "import os\nraise ValueError(os.getcwd())\n");
  r = pyvisor::cli_test::run_process("/bin/sh", {"-c", "cd '" + dir.path() + "' && exec '" +
                                                            pyvisor::cli_test::program +
                                                            "' eval --cwd work -f f.py"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("File \"" + fs::absolute(dir / "f.py").string() + "\", line 2"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("raise ValueError(os.getcwd())"), std::string::npos) << r.err;
}

TEST(EvalPath, PrependsDirectoriesForCodeAndInitScript) {
  temp_dir dir;
  // Directory names that would break code built by string interpolation.
  const std::string odd = dir / "it's \"odd\"\\ dir";
  write_file(dir / "a/mod_a.py", "VALUE = 'a'\n");
  write_file(odd + "/mod_b.py", "VALUE = 'b'\n");
  write_file(dir / "c/mod_a.py", "VALUE = 'shadowed'\n");
  auto r = pyvisor({"eval", "--path", dir / "a", "--path", odd, "--path", dir / "c",
                    "--init-script", "import mod_a",
                    "import sys, mod_b\n"
                    "return [mod_a.VALUE, mod_b.VALUE, sys.path[:3], '__pyvisor_path__' in globals()]"});
  EXPECT_EQ(r.status, 0) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc[0], "a");  // the first --path wins
  EXPECT_EQ(doc[1], "b");
  EXPECT_EQ(doc[2], nlohmann::json::array({dir / "a", odd, dir / "c"}));
  EXPECT_EQ(doc[3], false);  // the helper variable is gone
  // Relative directories are taken relative to our working directory, not --cwd.
  r = pyvisor::cli_test::run_process(
      "/bin/sh", {"-c", "cd '" + dir.path() + "' && exec '" + pyvisor::cli_test::program +
                            "' eval --path a --cwd c 'import mod_a\nreturn mod_a.VALUE'"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "\"a\"\n");
  // An init script after the --path line: its errors still come through.
  r = pyvisor({"eval", "--path", dir / "a", "--init-script", "import no_such_module", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("error: init_failed: No module named 'no_such_module'"), std::string::npos)
      << r.err;
}

TEST(EvalRaw, PrintsStrResultsAsTheyAre) {
  auto r = pyvisor({"eval", "--raw", R"(return 'line "one"\n\tzwei é')"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "line \"one\"\n\tzwei \xC3\xA9\n");
  r = pyvisor({"eval", "--raw", "return ''"});
  EXPECT_EQ(r.out, "\n") << describe(r);
  // Anything else is JSON, strings inside containers included.
  r = pyvisor({"eval", "--raw", "return ['a', 1]"});
  EXPECT_EQ(r.out, "[\"a\",1]\n") << describe(r);
  r = pyvisor({"eval", "--raw", "return None"});
  EXPECT_EQ(r.out, "null\n") << describe(r);
  r = pyvisor({"eval", "--raw", "return b'x'"});
  EXPECT_EQ(r.out, "{\"$bytes\":\"eA==\"}\n") << describe(r);
}

struct exit_case {
  std::string code;
  int status;
};

TEST(EvalSystemExit, IsTheExitStatus) {
  // Success: the result is null, nothing on stderr from pyvisor.
  for (const char* code : {"import sys\nsys.exit()", "raise SystemExit(None)", "raise SystemExit(0)",
                           "raise SystemExit", "import sys\nsys.exit(False)",
                           "import asyncio\nawait asyncio.sleep(0)\nraise SystemExit(0)"}) {
    const auto r = pyvisor({"eval", code});
    EXPECT_EQ(r.status, 0) << code << "\n" << describe(r);
    EXPECT_EQ(r.out, "null\n") << code;
    EXPECT_EQ(r.err.find("error:"), std::string::npos) << code << "\n" << r.err;
  }
  // An integer: that status (1..125), else 1; nothing printed, as python3 does.
  const std::vector<exit_case> cases = {
      {"import sys\nsys.exit(3)", 3},  {"raise SystemExit(1)", 1},   {"raise SystemExit(125)", 125},
      {"raise SystemExit(126)", 1},    {"raise SystemExit(255)", 1}, {"raise SystemExit(-1)", 1},
      {"raise SystemExit(10**30)", 1}, {"raise SystemExit(True)", 1},
      {"import asyncio\nawait asyncio.sleep(0)\nraise SystemExit(9)", 9},
  };
  for (const exit_case& c : cases) {
    const auto r = pyvisor({"eval", c.code});
    EXPECT_EQ(r.status, c.status) << c.code << "\n" << describe(r);
    EXPECT_EQ(r.out, "") << c.code;
    EXPECT_EQ(r.err.find("error:"), std::string::npos) << c.code << "\n" << r.err;
    EXPECT_EQ(r.err.find("Traceback"), std::string::npos) << c.code << "\n" << r.err;
  }
  // A message: on stderr, status 1, no traceback.
  auto r = pyvisor({"eval", "import sys\nsys.exit('giving up: no input')"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("giving up: no input\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Traceback"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("error:"), std::string::npos) << r.err;
  // --json: the exit is reported as the error line, the status is kept.
  r = pyvisor({"eval", "--json", "raise SystemExit(4)"});
  EXPECT_EQ(r.status, 4) << describe(r);
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["error"]["type"], "SystemExit");
  EXPECT_EQ(doc["error"]["message"], "4");
  r = pyvisor({"eval", "--json", "raise SystemExit('bye')"});
  EXPECT_EQ(r.status, 1) << describe(r);
  doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["error"]["message"], "bye");
  r = pyvisor({"eval", "--json", "raise SystemExit()"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "null\n");
  // From a file, as a script would end.
  temp_dir dir;
  write_file(dir / "main.py", "import sys\n\ndef main():\n    return 5\n\nsys.exit(main())\n");
  r = pyvisor({"eval", "-f", dir / "main.py"});
  EXPECT_EQ(r.status, 5) << describe(r);
  // A SystemExit subclass is an ordinary exception.
  r = pyvisor({"eval", "class Stop(SystemExit): pass\nraise Stop(3)"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("error: python_exception: 3"), std::string::npos) << r.err;
}

TEST(Version, PrintsTheProjectVersion) {
  const auto r = pyvisor({"--version"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, std::string("pyvisor ") + PYVISOR_VERSION + "\n");
  EXPECT_EQ(r.err, "");
}

} // namespace
