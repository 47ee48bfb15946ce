// The C# binding's tests: a console program (no test framework needed).
// Each test is a method; a failed check throws, the test counts as failed,
// the others still run. Prints "N passed, F failed" and exits non-zero on any
// failure. Every wait has a timeout and a watchdog ends a hung run.
//
//     mcs -out:Tests.exe Floorbell.cs Tests.cs && LD_LIBRARY_PATH=target/debug mono Tests.exe
//
// `Tests.exe --publish-and-die DIR` is the child of the durability test: it
// publishes one event, prints its hash and SIGKILLs itself.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.CompilerServices;
using System.Linq;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using Floorbell;

static class Tests
{
    const string QrToken = "sq";
    const string AdminToken = "sa";
    const string Config = "qr-token = \"" + QrToken + "\"\nadmin-token = \"" + AdminToken + "\"\nno-mdns = true\n";
    const int TimeoutMs = 10000;
    const int WatchdogMs = 120000;
    static readonly Regex Hash = new Regex("^0x[0-9a-f]{8}$");

    static int passed, failed;

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "--publish-and-die") return PublishAndDie(args[1]);

        var watchdog = new Timer(_ =>
        {
            Console.Error.WriteLine("FAIL: the tests did not finish within " + WatchdogMs / 1000 + " s");
            Environment.Exit(2);
        }, null, WatchdogMs, Timeout.Infinite);

        Run("version", TestVersion);
        Run("publish and read back", TestPublishAndReadBack);
        Run("bad calls throw and change nothing", TestBadCalls);
        Run("closed engine refuses calls", TestClosedEngine);
        Run("open errors", TestOpenErrors);
        Run("serve and read over HTTP", TestServeAndReadOverHttp);
        Run("callback for an HTTP publish", TestCallbackForHttpPublish);
        Run("callback survives GC, stops after unsubscribe", TestCallbackLifetime);
        Run("unsubscribed callbacks are let go", TestUnsubscribedCallbacksAreLetGo);
        Run("a callback that falls behind is told", TestCallbackLagged);
        Run("a ticket through sessions", TestTicketThroughSessions);
        Run("an order through the binding", TestOrderThroughBinding);
        Run("bad order calls throw and change nothing", TestBadOrderCalls);
        Run("callback for an order changed over HTTP, the button", TestOrderOverHttp);
        Run("submitted events reach subscribers", TestSubmitEvent);
        Run("Dispose while a callback calls the engine", TestDisposeWhileACallbackCalls);
        Run("durable after kill -9", TestDurableAfterKill);

        watchdog.Dispose();
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    // --- harness -----------------------------------------------------------

    static void Run(string name, Action test)
    {
        try
        {
            test();
            passed++;
            Console.WriteLine("ok   " + name);
        }
        catch (Exception e)
        {
            failed++;
            Console.Error.WriteLine("FAIL " + name + ": " + e);
        }
    }

    static void Check(bool condition, string message)
    {
        if (!condition) throw new Exception("check failed: " + message);
    }

    static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new Exception("check failed: " + what + ": expected <" + expected + ">, got <" + actual + ">");
    }

    /// <summary>Runs `call`, which must throw FloorbellException with `status`
    /// and a message containing `reason`.</summary>
    static FloorbellException Throws(Status status, Action call, string reason = null)
    {
        try
        {
            call();
        }
        catch (FloorbellException e)
        {
            Equal(status, e.Status, "status of " + e.Message);
            Check(e.Reason.Length > 0, "empty error message for " + status);
            if (reason != null) Check(e.Reason.Contains(reason), "'" + e.Reason + "' does not mention '" + reason + "'");
            return e;
        }
        throw new Exception("check failed: expected FloorbellException(" + status + "), nothing thrown");
    }

    /// <summary>A fresh data directory under the temp dir, removed after `body`.</summary>
    static void WithDir(Action<string> body)
    {
        string dir = Path.Combine(Path.GetTempPath(), "floorbell-cs-" + Guid.NewGuid().ToString("N"));
        try
        {
            body(dir);
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static void WithEngine(Action<Engine> body)
    {
        WithDir(dir =>
        {
            using (var fb = new Engine(Path.Combine(dir, "data"), Config)) body(fb);
        });
    }

    sealed class HttpAnswer
    {
        public int Status;
        public string Body;
    }

    /// <summary>One request to 127.0.0.1:port with HttpWebRequest, no proxy, with timeouts.</summary>
    static HttpAnswer Http(string method, int port, string path, string[] headers, string body = null)
    {
        var req = (HttpWebRequest)WebRequest.Create("http://127.0.0.1:" + port + path);
        req.Method = method;
        req.Proxy = null;
        req.KeepAlive = false;
        req.Timeout = TimeoutMs;
        req.ReadWriteTimeout = TimeoutMs;
        for (int i = 0; i + 1 < headers.Length; i += 2) req.Headers[headers[i]] = headers[i + 1];
        if (body != null)
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            req.ContentType = "application/json";
            req.ContentLength = bytes.Length;
            using (var s = req.GetRequestStream()) s.Write(bytes, 0, bytes.Length);
        }
        HttpWebResponse resp;
        try
        {
            resp = (HttpWebResponse)req.GetResponse();
        }
        catch (WebException e) when (e.Response != null)
        {
            resp = (HttpWebResponse)e.Response;
        }
        using (resp)
        using (var reader = new StreamReader(resp.GetResponseStream(), Encoding.UTF8))
            return new HttpAnswer { Status = (int)resp.StatusCode, Body = reader.ReadToEnd() };
    }

    /// <summary>A subscriber that records changes and waits for one.</summary>
    sealed class Collector
    {
        public readonly List<Tuple<ChangeKind, string, int>> Changes = new List<Tuple<ChangeKind, string, int>>();

        public void OnChange(ChangeKind kind, string text)
        {
            lock (Changes)
            {
                Changes.Add(Tuple.Create(kind, text, Thread.CurrentThread.ManagedThreadId));
                Monitor.PulseAll(Changes);
            }
        }

        public Tuple<ChangeKind, string, int> WaitFor(Func<ChangeKind, string, bool> match)
        {
            var deadline = DateTime.UtcNow.AddMilliseconds(TimeoutMs);
            lock (Changes)
            {
                for (;;)
                {
                    var found = Changes.FirstOrDefault(c => match(c.Item1, c.Item2));
                    if (found != null) return found;
                    var left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero || !Monitor.Wait(Changes, left))
                    {
                        found = Changes.FirstOrDefault(c => match(c.Item1, c.Item2));
                        if (found != null) return found;
                        throw new Exception("check failed: no matching change within " + TimeoutMs + " ms; got: " +
                                            string.Join(" | ", Changes.Select(c => c.Item1 + " " + c.Item2)));
                    }
                }
            }
        }

        public List<string> Texts(ChangeKind kind)
        {
            lock (Changes) return Changes.Where(c => c.Item1 == kind).Select(c => c.Item2).ToList();
        }
    }

    static string[] Hashes(string eventsJson)
    {
        return Regex.Matches(eventsJson, "\"hash\":\"(0x[0-9a-f]{8})\"").Cast<Match>().Select(m => m.Groups[1].Value).ToArray();
    }

    // --- tests -------------------------------------------------------------

    static void TestVersion()
    {
        var cargo = File.ReadAllText(Path.Combine(RepoRoot(), "Cargo.toml"));
        var want = Regex.Match(cargo, "(?m)^version = \"([^\"]+)\"").Groups[1].Value;
        Equal(want, Engine.Version, "version");
    }

    static void TestPublishAndReadBack()
    {
        WithEngine(fb =>
        {
            Equal("{\"result\":true,\"data\":{\"updates\":[]}}", fb.EventsSince(), "fresh engine");
            string h1 = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":5}");
            string h2 = fb.PublishEvent("{\"code\":\"save_order\",\"order\":{\"dish\":\"Борщ\"}}");
            Check(Hash.IsMatch(h1) && Hash.IsMatch(h2) && h1 != h2, "hashes " + h1 + " " + h2);
            string all = fb.EventsSince(null);
            Equal("{\"result\":true,\"data\":{\"updates\":[{\"hash\":\"" + h1 +
                  "\",\"code\":\"waiter_call\",\"table\":5,\"invoice\":null,\"order\":null,\"table_repr\":null}," +
                  "{\"hash\":\"" + h2 + "\",\"code\":\"save_order\",\"table\":null,\"invoice\":null," +
                  "\"order\":{\"dish\":\"Борщ\"},\"table_repr\":null}]}}", all, "events (UTF-8 round trip)");
            Equal(all, fb.EventsSince("none"), "hash=none");
            Equal(h2, string.Join(",", Hashes(fb.EventsSince(h1))), "after h1");
            Equal(0, Hashes(fb.EventsSince(h2)).Length, "after h2");
            Equal(all, fb.EventsSince("0x00000000"), "unknown hash");
        });
    }

    static void TestBadCalls()
    {
        WithEngine(fb =>
        {
            string h = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":1}");
            string before = fb.EventsSince();
            Throws(Status.InvalidArgument, () => fb.PublishEvent("{not json"), "JSON");
            Throws(Status.InvalidArgument, () => fb.PublishEvent("{\"code\":\"Bad Code!\"}"));
            Throws(Status.InvalidArgument, () => fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":\"five\"}"));
            var badUtf8 = Encoding.ASCII.GetBytes("{\"code\":\"waiter_call\",\"x\":\"??\"}");
            badUtf8[27] = 0xff;
            badUtf8[28] = 0xfe;
            Throws(Status.InvalidUtf8, () => fb.PublishEventBytes(badUtf8), "UTF-8");
            Throws(Status.InvalidArgument, () => fb.OpenSession("chef"), "\"chef\"");
            Throws(Status.NotFound, () => fb.Unsubscribe(424242), "424242");
            Throws(Status.InvalidArgument, () => fb.Serve("not an address"));
            Throws(Status.WrongState, () => fb.StopServing());
            Throws(Status.NotFound, () => fb.RemoveStaff("Nobody"));

            var kiosk = fb.OpenSession("kiosk");
            kiosk.Dispose();
            Throws(Status.NotFound, () => kiosk.Command("new a@b.c Anna"), "no session " + kiosk.Id);
            kiosk.Dispose(); // again: nothing

            Equal(before, fb.EventsSince(), "events after bad calls");
            Equal(h, string.Join(",", Hashes(before)), "the one event");
            using (var k = fb.OpenSession("kiosk"))
                Check(k.Command("new a@b.c Anna").StartsWith("success new {\"id\":0,"), "a ticket was created by a bad call");
        });
    }

    static void TestClosedEngine()
    {
        WithDir(dir =>
        {
            var fb = new Engine(dir, Config);
            var session = fb.OpenSession("kiosk");
            fb.Dispose();
            fb.Dispose(); // idempotent
            Check(fb.IsClosed, "IsClosed after Dispose");
            Throws(Status.Closed, () => fb.PublishEvent("{\"code\":\"waiter_call\"}"), "closed");
            Throws(Status.Closed, () => fb.EventsSince(), "closed");
            Throws(Status.Closed, () => fb.Serve(), "closed");
            Throws(Status.Closed, () => fb.AddStaff("Anna"), "closed");
            Throws(Status.Closed, () => fb.OpenSession("kiosk"), "closed");
            Throws(Status.Closed, () => fb.Subscribe((k, t) => { }), "closed");
            Throws(Status.Closed, () => session.Command("new a@b.c Anna"), "closed");
            Throws(Status.Closed, () => fb.PressButton(), "closed");
            Throws(Status.Closed, () => fb.StartOrder("{\"name\":\"1\",\"orderType\":\"TO_GO\"}"), "closed");
            Throws(Status.Closed, () => fb.ModifyOrder("1", "{}"), "closed");
            Throws(Status.Closed, () => fb.PageOrder("1"), "closed");
            Throws(Status.Closed, () => fb.ClearOrder("1"), "closed");
            Throws(Status.Closed, () => fb.ClearAllOrders(), "closed");
            Throws(Status.Closed, () => fb.ActiveOrders(), "closed");
            Throws(Status.Closed, () => fb.SubmitEvent("{\"code\":\"waiter_call\"}"), "closed");
            session.Dispose(); // after the engine: nothing to do
        });
    }

    static void TestOpenErrors()
    {
        WithDir(dir =>
        {
            Throws(Status.InvalidArgument, () => new Engine(Path.Combine(dir, "a"), "tables = 0"), "tables");
            Throws(Status.InvalidArgument, () => new Engine(Path.Combine(dir, "b"), "no-such-key = 1"), "no-such-key");
            string c = Path.Combine(dir, "c");
            using (new Engine(c, Config))
                Throws(Status.InUse, () => new Engine(c, Config), "in use");
            new Engine(c, Config).Dispose(); // released on close
        });
    }

    static void TestServeAndReadOverHttp()
    {
        WithEngine(fb =>
        {
            string h = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":7}");
            int port = fb.Serve("127.0.0.1:0");
            Check(port > 0, "port " + port);
            var got = Http("GET", port, "/api/v4/events?hash=none", new[] { "token", QrToken });
            Equal(200, got.Status, "GET status (" + got.Body + ")");
            Equal(fb.EventsSince(), got.Body, "HTTP body");
            Equal(h, string.Join(",", Hashes(got.Body)), "hash over HTTP");

            got = Http("GET", port, "/api/v4/events?hash=none", new[] { "token", "wrong" });
            Equal(401, got.Status, "wrong token");
            Equal("{\"result\":false,\"error\":\"invalid token\"}", got.Body, "wrong-token body");

            Throws(Status.WrongState, () => fb.Serve());
            fb.StopServing();
            try
            {
                Http("GET", port, "/api/v4/events?hash=none", new[] { "token", QrToken });
                throw new Exception("check failed: still serving after StopServing");
            }
            catch (WebException e)
            {
                Check(e.Response == null, "an answer after StopServing: " + e.Status);
            }
        });
    }

    static void TestCallbackForHttpPublish()
    {
        WithEngine(fb =>
        {
            var seen = new Collector();
            ulong sub = fb.Subscribe(seen.OnChange);
            int port = fb.Serve();
            var posted = Http("POST", port, "/api/v4/events", new[] { "Authorization", "Bearer " + AdminToken },
                              "{\"code\":\"online_payment\",\"table\":12,\"invoice\":{\"sum\":1500}}");
            Equal(201, posted.Status, "POST status (" + posted.Body + ")");
            string h = Regex.Match(posted.Body, "\"hash\":\"(0x[0-9a-f]{8})\"").Groups[1].Value;
            Check(Hash.IsMatch(h), "hash in " + posted.Body);

            var change = seen.WaitFor((k, t) => t.Contains(h));
            Equal(ChangeKind.Event, change.Item1, "kind");
            Check(change.Item2.Contains("\"code\":\"online_payment\",\"table\":12,\"invoice\":{\"sum\":1500}"), change.Item2);
            Check(change.Item3 != Thread.CurrentThread.ManagedThreadId, "callback ran on the caller's thread");

            var refused = Http("POST", port, "/api/v4/events", new[] { "Authorization", "Bearer nope" }, "{\"code\":\"waiter_call\"}");
            Equal(401, refused.Status, "POST without the admin token");
            fb.Unsubscribe(sub);
            Equal(1, seen.Texts(ChangeKind.Event).Count, "events heard");
        });
    }

    static void TestCallbackLifetime()
    {
        WithEngine(fb =>
        {
            var seen = new Collector();
            ulong sub = fb.Subscribe((k, t) => seen.OnChange(k, t)); // only the engine holds the delegate
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            string h1 = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":2}");
            seen.WaitFor((k, t) => k == ChangeKind.Event && t.Contains(h1));

            fb.Unsubscribe(sub);
            Throws(Status.NotFound, () => fb.Unsubscribe(sub));
            // Callbacks run in commit order on one thread: once the barrier
            // hears h2, the unsubscribed callback would have heard it too.
            var barrier = new Collector();
            fb.Subscribe(barrier.OnChange);
            string h2 = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":3}");
            barrier.WaitFor((k, t) => t.Contains(h2));
            Check(!seen.Texts(ChangeKind.Event).Any(t => t.Contains(h2)), "an unsubscribed callback was called");
        });
    }

    // A host that subscribes and unsubscribes again and again (a window
    // opened and closed) must not keep every callback it ever gave; one that
    // unsubscribes itself is let go once it has returned.
    static void TestUnsubscribedCallbacksAreLetGo()
    {
        WithEngine(fb =>
        {
            var outside = SubscribeAndUnsubscribe(fb, 200);
            var inside = SubscribeUnsubscribingThemselves(fb, 20);
            fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":2}");
            // Callbacks run in commit order on one thread: once the barrier
            // hears h2, each of the 20 has heard the first event and
            // unsubscribed itself, and a later start let the last one go.
            var barrier = new Collector();
            fb.Subscribe(barrier.OnChange);
            string h2 = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":3}");
            barrier.WaitFor((k, t) => t.Contains(h2));
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            // Mono scans stacks conservatively: allow a stray reference or two.
            int kept = outside.Count(w => w.IsAlive);
            Check(kept <= 2, kept + " of 200 unsubscribed callbacks still reachable");
            kept = inside.Count(w => w.IsAlive);
            Check(kept <= 2, kept + " of 20 self-unsubscribed callbacks still reachable");
        });
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static WeakReference[] SubscribeAndUnsubscribe(Engine fb, int n)
    {
        var refs = new WeakReference[n];
        for (int i = 0; i < n; i++)
        {
            var seen = new Collector();
            refs[i] = new WeakReference(seen);
            fb.Unsubscribe(fb.Subscribe(seen.OnChange));
        }
        return refs;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static WeakReference[] SubscribeUnsubscribingThemselves(Engine fb, int n)
    {
        var refs = new WeakReference[n];
        for (int i = 0; i < n; i++)
        {
            var seen = new Collector();
            refs[i] = new WeakReference(seen);
            ulong sub = 0;
            var subscribed = new ManualResetEventSlim(false);
            sub = fb.Subscribe((k, t) =>
            {
                subscribed.Wait();
                seen.OnChange(k, t);
                fb.Unsubscribe(sub);
            });
            subscribed.Set();
        }
        return refs;
    }

    static void TestCallbackLagged()
    {
        WithDir(dir =>
        {
            using (var fb = new Engine(Path.Combine(dir, "data"), Config + "callback-queue-bytes = 2048\n"))
            using (var release = new ManualResetEventSlim(false))
            {
                var seen = new Collector();
                fb.Subscribe((k, t) => { release.Wait(TimeSpan.FromSeconds(10)); seen.OnChange(k, t); });
                var hashes = new List<string>();
                for (int t = 0; t < 60; t++) hashes.Add(fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":" + t + "}"));
                release.Set();
                var notice = seen.WaitFor((k, t) => k == ChangeKind.Lagged);
                string after = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":60}");
                seen.WaitFor((k, t) => t.Contains(after));
                List<Tuple<ChangeKind, string, int>> heard;
                lock (seen.Changes) heard = seen.Changes.ToList();
                int lag = heard.FindIndex(c => c.Item1 == ChangeKind.Lagged);
                int missed = int.Parse(notice.Item2);
                // Before the notice the first events published; after it, the
                // ones after those missed (a publish may return before its
                // change reaches the callback thread: then it is heard after).
                var all = hashes.Concat(new[] { after }).ToList();
                var want = all.Take(lag).Concat(all.Skip(lag + missed)).ToList();
                var events = heard.Where(c => c.Item1 == ChangeKind.Event).ToList();
                Equal(want.Count, events.Count, "events heard");
                Check(heard.Skip(lag + 1).All(c => c.Item1 == ChangeKind.Event), "one notice");
                for (int i = 0; i < want.Count; i++)
                    Check(events[i].Item2.Contains(want[i]), "event " + i + " in order: " + events[i].Item2);
                // The resync: everything after the last event heard before the notice.
                string since = fb.EventsSince(hashes[lag - 1]);
                var resync = Regex.Matches(since, "\"hash\":\"(0x[0-9a-f]{8})\"").Cast<Match>().Select(m => m.Groups[1].Value).ToList();
                Check(resync.SequenceEqual(hashes.Skip(lag).Concat(new[] { after })), "resync: " + since);
            }
        });
    }

    static void TestTicketThroughSessions()
    {
        // The ticket JSON of SPEC §2 as a regex; STAFF is replaced per use.
        const string ticket = "\\{\"id\":0,\"email\":\"ann@example\\.com\",\"name\":\"Ann Lee\",\"staff\":\"STAFF\"," +
                              "\"start\":\"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\",\"end\":\"1970-01-01T00:00:00Z\"\\}";
        WithEngine(fb =>
        {
            var seen = new Collector();
            fb.Subscribe(seen.OnChange);
            string token = fb.AddStaff("Anna");
            Check(Regex.IsMatch(token, "^\\S{16,}$"), "token " + token);
            Throws(Status.Conflict, () => fb.AddStaff("Anna"));

            using (var kiosk = fb.OpenSession("kiosk"))
            using (var staff = fb.OpenSession("staff"))
            using (fb.OpenSession("display"))
            {
                string reply = kiosk.Command("new ann@example.com Ann Lee");
                Check(Regex.IsMatch(reply, "^success new " + ticket.Replace("STAFF", "\\{\\}") + "$"), "new: " + reply);
                Equal("success query Ann Lee", kiosk.Command("query ann@example.com"), "query");
                Equal("error accept you do not have a table chosen", staff.Command("accept 0"), "accept before pick");
                Equal("error pick the provided token does not belong to any staff member", staff.Command("pick 0 nope"), "bad token");
                Equal("success pick 0", staff.Command("pick 0 " + token), "pick");
                Equal("error accept ticket id does not exist", staff.Command("accept 9"), "accept 9");
                Equal("success claimed 0", staff.Command("accept 0"), "accept");
                Equal("success complete 0", staff.Command("complete 0"), "complete");
                Equal("error complete the ticket has already been completed or cancelled", staff.Command("complete 0"), "complete again");
                Equal("error dance malformed command", staff.Command("dance"), "unknown word");
            }

            seen.WaitFor((k, t) => t == "unpick 0");
            var tickets = seen.Texts(ChangeKind.Ticket);
            Equal("pick 0|claimed 0 0|complete 0|unpick 0",
                  string.Join("|", tickets.Where(t => !t.StartsWith("new ") && !t.StartsWith("claimed {"))), "display broadcasts");
            Check(tickets.Any(t => Regex.IsMatch(t, "^claimed " + ticket.Replace("STAFF", "Anna") + "$")), "staff claimed broadcast");

            fb.RemoveStaff("Anna");
            using (var staff = fb.OpenSession("staff"))
                Equal("error pick the provided token does not belong to any staff member", staff.Command("pick 1 " + token), "removed staff");
        });
    }

    const string NoOrders = "{\"status\":200,\"count\":0,\"items\":[]}";

    static string Field(string json, string name)
    {
        var m = Regex.Match(json, "\"" + name + "\":(\"[^\"]*\"|[0-9]+)");
        Check(m.Success, "no " + name + " in " + json);
        return m.Groups[1].Value.Trim('"');
    }

    /// <summary>The JSON without its elapsedTime (which ticks between reads).</summary>
    static string Timeless(string json) => Regex.Replace(json, "\"elapsedTime\":[0-9]+,", "");

    static void TestOrderThroughBinding()
    {
        WithEngine(fb =>
        {
            var seen = new Collector();
            fb.Subscribe(seen.OnChange);
            Equal(NoOrders, fb.ActiveOrders(), "fresh orders");

            string started = fb.StartOrder("{\"name\":\"66\",\"orderType\":\"TO_GO\"}");
            Check(Regex.IsMatch(started, "^\\{\"status\":201,\"activeorder\":\\{\"elapsedTime\":[0-9]+,\"uuid\":\"[0-9a-f-]{36}\",\"seq\":[0-9]+," +
                                         "\"created\":\"[0-9T:-]{19}\",\"orderType\":\"TO_GO\",\"locationName\":\"\",\"state\":\"started\"," +
                                         "\"stateStarted\":\"[0-9T:-]{19}\",\"name\":\"66\"\\}\\}$"), "start: " + started);
            string uuid = Field(started, "uuid");
            long seq = long.Parse(Field(started, "seq"));

            string located = fb.ModifyOrder(uuid, "{\"locationName\":\"22\"}");
            Check(located.StartsWith("{\"status\":200,\"activeorder\":") && located.Contains("\"locationName\":\"22\",\"state\":\"located\""), "modify: " + located);
            Equal((seq + 1).ToString(), Field(located, "seq"), "seq after modify");
            Equal((seq + 2).ToString(), Field(fb.PageOrder("66"), "seq"), "seq after page");
            Equal((seq + 3).ToString(), Field(fb.PageOrder(uuid, false), "seq"), "seq after page (no tracking)");
            Equal("1", Field(fb.ActiveOrders(), "count"), "active count");
            Check(fb.ActiveOrders().Contains(uuid), "active orders list the order");

            string cleared = fb.ClearOrder("66");
            Equal("cleared", Field(cleared, "state"), "state after clear");
            Equal(NoOrders, fb.ActiveOrders(), "orders after clear");

            fb.StartOrder("{\"name\":\"1\",\"orderType\":\"ON_PREMISE\",\"locationName\":\"3\"}");
            fb.StartOrder("{\"name\":\"2\",\"orderType\":\"ON_PREMISE\"}");
            Equal(2UL, fb.ClearAllOrders(), "cleared by clear-all");
            Equal(0UL, fb.ClearAllOrders(), "clear-all of nothing");

            seen.WaitFor((k, t) => seen.Texts(ChangeKind.Order).Count >= 9);
            var types = seen.Texts(ChangeKind.Order).Select(t => Field(t, "type")).ToArray();
            Equal("ORDER_CREATED ORDER_MODIFIED ORDER_PAGED ORDER_PAGED ORDER_MODIFIED ORDER_CREATED ORDER_CREATED ORDER_MODIFIED ORDER_MODIFIED",
                  string.Join(" ", types), "order changes");
            Check(seen.Texts(ChangeKind.Order).All(t => t.StartsWith("{\"elapsedTime\":") && t.Contains("\",\"type\":\"ORDER_") && t.EndsWith("\"}")), "change shape");
        });
    }

    static void TestBadOrderCalls()
    {
        WithEngine(fb =>
        {
            string uuid = Field(fb.StartOrder("{\"name\":\"66\",\"orderType\":\"TO_GO\",\"locationName\":\"4\"}"), "uuid");
            string before = Timeless(fb.ActiveOrders());
            Throws(Status.Conflict, () => fb.StartOrder("{\"name\":\"66\",\"orderType\":\"TO_GO\"}"), "66");
            Throws(Status.InvalidArgument, () => fb.StartOrder("{\"name\":\"67\","), "JSON");
            Throws(Status.InvalidArgument, () => fb.StartOrder("{\"name\":\"67\"}"), "orderType");
            Throws(Status.InvalidArgument, () => fb.StartOrder("{\"name\":\"abcdefg\",\"orderType\":\"TO_GO\"}"), "name");
            Throws(Status.InvalidArgument, () => fb.ModifyOrder("66", "{\"orderType\":\"TAKEAWAY\"}"), "orderType");
            const string unknown = "3f2c1b0a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
            Throws(Status.NotFound, () => fb.ModifyOrder(unknown, "{\"locationName\":\"1\"}"));
            Throws(Status.NotFound, () => fb.PageOrder(unknown));
            Throws(Status.NotFound, () => fb.ClearOrder(unknown));
            Throws(Status.NotFound, () => fb.ClearOrder("999"));
            Throws(Status.NullPointer, () => fb.ClearOrder(null), "key");
            Throws(Status.NullPointer, () => fb.StartOrder(null), "order_json");
            var badUtf8 = Encoding.ASCII.GetBytes("{\"name\":\"68\",\"orderType\":\"TO_GO\",\"x\":\"??\"}");
            badUtf8[badUtf8.Length - 3] = 0xff;
            Throws(Status.InvalidUtf8, () => fb.StartOrderBytes(badUtf8), "UTF-8");
            Equal(before, Timeless(fb.ActiveOrders()), "orders after bad calls");

            fb.ClearOrder(uuid);
            Throws(Status.NotFound, () => fb.PageOrder("66"));
            Throws(Status.Conflict, () => fb.ModifyOrder(uuid, "{\"locationName\":\"5\"}"));
        });
    }

    static void TestOrderOverHttp()
    {
        WithEngine(fb =>
        {
            var seen = new Collector();
            fb.Subscribe(seen.OnChange);
            int port = fb.Serve();
            var admin = new[] { "Authorization", "Bearer " + AdminToken };
            var posted = Http("POST", port, "/api/v2/activeorders", admin,
                              "{\"name\":\"501\",\"orderType\":\"ON_PREMISE\",\"locationName\":\"9\"}");
            Equal(201, posted.Status, "POST status (" + posted.Body + ")");
            string uuid = Field(posted.Body, "uuid");
            var change = seen.WaitFor((k, t) => k == ChangeKind.Order && t.Contains(uuid));
            Check(change.Item2.StartsWith("{\"elapsedTime\":") && change.Item2.EndsWith("\"type\":\"ORDER_CREATED\",\"name\":\"501\"}") && change.Item2.Contains("\"state\":\"located\""), change.Item2);
            Check(change.Item3 != Thread.CurrentThread.ManagedThreadId, "callback ran on the caller's thread");
            Check(fb.ActiveOrders().Contains(uuid), "the HTTP order is active");

            var put = Http("PUT", port, "/api/v2/activeorders/501", admin, "{\"orderType\":\"TO_GO\"}");
            Equal(200, put.Status, "PUT status (" + put.Body + ")");
            seen.WaitFor((k, t) => k == ChangeKind.Order && t.Contains("\"orderType\":\"TO_GO\""));

            Equal(403, Http("GET", port, "/api/v2/accesstoken/generate", new string[0]).Status, "token before the button");
            fb.PressButton();
            var token = Http("GET", port, "/api/v2/accesstoken/generate", new string[0]);
            Equal(201, token.Status, "token after the button (" + token.Body + ")");
            Check(Regex.IsMatch(token.Body, "\"token\":\"[0-9a-f]{48}\""), token.Body);
        });
    }

    static void TestSubmitEvent()
    {
        WithEngine(fb =>
        {
            var seen = new Collector();
            fb.Subscribe(seen.OnChange);
            for (int table = 0; table < 10; table++)
                fb.SubmitEvent("{\"code\":\"waiter_call\",\"table\":" + table + "}");
            Throws(Status.InvalidArgument, () => fb.SubmitEvent("{\"code\":"), "JSON");
            seen.WaitFor((k, t) => seen.Texts(ChangeKind.Event).Count >= 10);
            var tables = seen.Texts(ChangeKind.Event).Select(t => Regex.Match(t, "\"table\":([0-9]+)").Groups[1].Value);
            Equal("0,1,2,3,4,5,6,7,8,9", string.Join(",", tables), "submission order");
            Equal(10, Hashes(fb.EventsSince()).Length, "events stored");
        });
    }

    // Dispose on one thread while a subscriber callback keeps calling the
    // engine: the last call to end (the callback's) must not close the
    // engine on floorbell's own callback thread, and Dispose returns only
    // once the engine is closed: the directory opens again at once, with
    // every submitted event in it.
    static void TestDisposeWhileACallbackCalls()
    {
        WithDir(dir =>
        {
            string data = Path.Combine(dir, "data");
            var fb = new Engine(data, Config);
            var calling = new ManualResetEventSlim(false);
            int closedSeen = 0;
            fb.Subscribe((kind, text) =>
            {
                if (Volatile.Read(ref closedSeen) != 0) return;
                calling.Set();
                // Back-to-back calls: Dispose lands inside one of them.
                try
                {
                    while (true) fb.EventsSince(null);
                }
                catch (FloorbellException e)
                {
                    Equal(Status.Closed, e.Status, "a call after Dispose");
                    Volatile.Write(ref closedSeen, 1);
                }
            });
            for (int table = 0; table < 200; table++)
                fb.SubmitEvent("{\"code\":\"waiter_call\",\"table\":" + table + "}");
            Check(calling.Wait(10000), "the callback never ran");
            Thread.Sleep(20);
            fb.Dispose();
            Check(fb.IsClosed, "closed after Dispose");
            Equal(1, Volatile.Read(ref closedSeen), "the callback saw the close");
            using (var again = new Engine(data, Config))
                Equal(200, Hashes(again.EventsSince()).Length, "events stored");
        });
    }

    static void TestDurableAfterKill()
    {
        WithDir(dir =>
        {
            string data = Path.Combine(dir, "data");
            string exe = System.Reflection.Assembly.GetEntryAssembly().Location;
            var start = new ProcessStartInfo
            {
                FileName = MonoPath(),
                Arguments = "\"" + exe + "\" --publish-and-die \"" + data + "\"",
                UseShellExecute = false,
                RedirectStandardOutput = true,
            };
            string output;
            int exitCode;
            using (var child = Process.Start(start))
            {
                var read = child.StandardOutput.ReadToEndAsync();
                if (!child.WaitForExit(60000))
                {
                    child.Kill();
                    throw new Exception("check failed: the child did not die within 60 s");
                }
                Check(read.Wait(TimeoutMs), "child stdout not closed");
                output = read.Result.Trim();
                exitCode = child.ExitCode;
            }
            // Mono reports a process killed by signal N as exit code 128 + N.
            Equal(128 + 9, exitCode, "child exit code (SIGKILL); output: " + output);
            Check(Hash.IsMatch(output), "child printed '" + output + "'");

            using (var fb = new Engine(data, Config))
            {
                string all = fb.EventsSince();
                Check(Hashes(all).Contains(output), "event " + output + " lost after kill -9: " + all);
                Check(all.Contains("\"hash\":\"" + output + "\",\"code\":\"waiter_call\",\"table\":9"), all);
            }
        });
    }

    /// <summary>The child: publish, print the hash, SIGKILL itself (no close, no flush of floorbell).</summary>
    static int PublishAndDie(string dir)
    {
        var fb = new Engine(dir, Config);
        string h = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":9}");
        Console.Out.WriteLine(h);
        Console.Out.Flush();
        // On Mono/Linux Process.Kill sends SIGKILL: no finalizer, no close.
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
        GC.KeepAlive(fb);
        return 3;
    }

    static string MonoPath()
    {
        try
        {
            string self = Process.GetCurrentProcess().MainModule.FileName;
            if (File.Exists(self)) return self;
        }
        catch (Exception) { }
        return "mono";
    }

    static string RepoRoot()
    {
        string env = Environment.GetEnvironmentVariable("FLOORBELL_ROOT");
        if (!string.IsNullOrEmpty(env)) return env;
        var d = new DirectoryInfo(AppDomain.CurrentDomain.BaseDirectory);
        while (d != null && !File.Exists(Path.Combine(d.FullName, "Cargo.toml"))) d = d.Parent;
        if (d == null) throw new Exception("set FLOORBELL_ROOT to the workspace");
        return d.FullName;
    }
}
