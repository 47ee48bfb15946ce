// floorbell for .NET / Mono: a P/Invoke binding of the C ABI
// (include/floorbell.h). The native library is found as "floorbell"
// (libfloorbell.so on LD_LIBRARY_PATH, or next to the assembly).
//
//     using (var fb = new Floorbell.Engine("/var/lib/pos/floorbell", "admin-token = \"s3cret\"")) {
//         string hash = fb.PublishEvent("{\"code\":\"waiter_call\",\"table\":3}");
//         string json = fb.EventsSince(null);
//         ushort port = fb.Serve("127.0.0.1:0");
//         using (var kiosk = fb.OpenSession("kiosk"))
//             Console.WriteLine(kiosk.Command("new guest@example.com Anna"));
//         string order = fb.StartOrder("{\"name\":\"66\",\"orderType\":\"TO_GO\"}");
//         fb.PageOrder("66");
//         fb.ClearOrder("66");
//     }
//
// Every failed call throws FloorbellException, carrying the C status and
// floorbell's last-error text. Strings go in as NUL-terminated UTF-8 byte
// arrays and come out as IntPtr, copied, then freed with
// floorbell_string_free. The engine handle is a SafeHandle: the marshaller
// holds a reference during each call, so Dispose (or the finalizer) calls
// floorbell_engine_close exactly once, after every call in progress ends.
// Subscriber callbacks run on floorbell's callback thread
// (`floorbell-callbacks`), never on the caller's.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Floorbell
{
    /// <summary>floorbell_status: the numbers are the header's and never move.</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument = 1,
        NullPointer = 2,
        InvalidUtf8 = 3,
        NotFound = 4,
        Conflict = 5,
        InUse = 6,
        Store = 7,
        Closed = 8,
        Io = 9,
        WrongState = 10,
        BufferTooSmall = 11,
        /// <summary>Accepted, not yet on disk (SubmitEvent): not an error.</summary>
        Queued = 12,
        Panic = 99,
    }

    /// <summary>floorbell_change: what a subscriber callback is told about.</summary>
    public enum ChangeKind
    {
        Event = 1,
        Ticket = 2,
        Order = 3,
        /// <summary>The callback fell too far behind (callback-queue-bytes):
        /// the text is the number of changes it missed here; resynchronise
        /// (EventsSince the last hash heard, the active orders).</summary>
        Lagged = 4,
    }

    /// <summary>A floorbell call failed: Status says how, Message says why.</summary>
    public sealed class FloorbellException : Exception
    {
        public Status Status { get; }

        public FloorbellException(Status status, string message)
            : base(string.IsNullOrEmpty(message) ? status.ToString() : message + " (" + status + ")")
        {
            Status = status;
            Reason = message ?? "";
        }

        /// <summary>floorbell's last-error text alone.</summary>
        public string Reason { get; }
    }

    /// <summary>The engine handle: released by floorbell_engine_close.</summary>
    internal sealed class EngineHandle : SafeHandle
    {
        public EngineHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>The status floorbell_engine_close returned.</summary>
        public Status CloseStatus { get; private set; } = Status.Ok;

        // The subscribed callback delegates, rooted while native code may
        // call them, even when the Engine object was dropped without Dispose
        // and is being finalized (a collected delegate's thunk would be a
        // dangling function pointer).
        public readonly CallbackRoots Roots = new CallbackRoots();

        // Set once the native engine is closed and the roots are freed.
        readonly ManualResetEventSlim released = new ManualResetEventSlim(false);

        /// <summary>Waits until the native engine is closed: Dispose marks
        /// the handle closed, and the close itself runs when the last call
        /// in progress on it ends.</summary>
        public void WaitReleased() => released.Wait();

        protected override bool ReleaseHandle()
        {
            if (Engine.InCallback)
            {
                // The last call to end ran inside a subscriber callback (it
                // called the engine while Dispose ran on another thread).
                // Close joins floorbell's callback thread, so it cannot run
                // here: another thread closes, and frees the roots only then
                // (the callback thread may still call the delegates).
                IntPtr engine = handle;
                new Thread(() => Close(engine)) { IsBackground = true, Name = "floorbell-close" }.Start();
                return true;
            }
            Close(handle);
            return CloseStatus == Status.Ok;
        }

        void Close(IntPtr engine)
        {
            // Joins floorbell's callback thread: no callback runs after this.
            CloseStatus = Native.floorbell_engine_close(engine);
            Roots.FreeAll();
            released.Set();
        }
    }

    /// <summary>GC roots of the callback delegates native code may call.
    /// Held by the handle and by each callback (never the handle itself
    /// from a callback, or an undisposed engine could not be finalized).</summary>
    internal sealed class CallbackRoots
    {
        readonly List<KeyValuePair<Delegate, GCHandle>> live = new List<KeyValuePair<Delegate, GCHandle>>();
        // Unsubscribed from inside their own call: still executing then, so
        // freed when the next callback starts on the (single) callback thread.
        readonly List<Delegate> deferred = new List<Delegate>();

        public void Add(Delegate callback)
        {
            lock (live) live.Add(new KeyValuePair<Delegate, GCHandle>(callback, GCHandle.Alloc(callback)));
        }

        /// <summary>Native code will not call `callback` again and is not in it.</summary>
        public void Free(Delegate callback)
        {
            lock (live)
            {
                int i = live.FindIndex(r => ReferenceEquals(r.Key, callback));
                if (i < 0) return;
                live[i].Value.Free();
                live.RemoveAt(i);
            }
        }

        /// <summary>Native code will not call `callback` again, but it is
        /// running on this thread now.</summary>
        public void Defer(Delegate callback)
        {
            lock (live) deferred.Add(callback);
        }

        /// <summary>Called as a callback starts: the deferred ones have returned.</summary>
        public void FreeDeferred()
        {
            Delegate[] done;
            lock (live)
            {
                if (deferred.Count == 0) return;
                done = deferred.ToArray();
                deferred.Clear();
            }
            foreach (var d in done) Free(d);
        }

        public void FreeAll()
        {
            lock (live)
            {
                foreach (var root in live) root.Value.Free();
                live.Clear();
                deferred.Clear();
            }
        }
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeCallback(IntPtr userData, int kind, IntPtr data, UIntPtr length);

    internal static class Native
    {
        const string Lib = "floorbell";

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr floorbell_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_open(byte[] dataDir, byte[] configToml, out EngineHandle engine);

        // Takes the raw pointer: called only by EngineHandle.ReleaseHandle.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_close(IntPtr engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_serve(EngineHandle engine, byte[] listen, out ushort port);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_stop_serving(EngineHandle engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_publish_event(EngineHandle engine, byte[] eventJson, byte[] outHash);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_submit_event(EngineHandle engine, byte[] eventJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_press_button(EngineHandle engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_order_start(EngineHandle engine, byte[] orderJson, out IntPtr order);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_order_modify(EngineHandle engine, byte[] key, byte[] changesJson, out IntPtr order);

        // C's bool is one byte: without I1 the marshaller passes a 4-byte BOOL.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_order_page(EngineHandle engine, byte[] key,
            [MarshalAs(UnmanagedType.I1)] bool tracking, out IntPtr order);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_order_clear(EngineHandle engine, byte[] key, out IntPtr order);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_orders_clear_all(EngineHandle engine, out UIntPtr count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_orders_active(EngineHandle engine, out IntPtr json);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_events_since(EngineHandle engine, byte[] hash, out IntPtr json, out UIntPtr length);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_staff_add(EngineHandle engine, byte[] name, out IntPtr token);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_staff_remove(EngineHandle engine, byte[] name);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_session_open(EngineHandle engine, byte[] role, out ulong session);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_session_command(EngineHandle engine, ulong session, byte[] command, out IntPtr reply);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_session_close(EngineHandle engine, ulong session);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_subscribe(EngineHandle engine, NativeCallback callback, IntPtr userData, out ulong subscription);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern Status floorbell_engine_unsubscribe(EngineHandle engine, ulong subscription);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern void floorbell_string_free(IntPtr text);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern UIntPtr floorbell_last_error_length();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern UIntPtr floorbell_last_error_message(byte[] buffer, UIntPtr length);

        /// <summary>NUL-terminated UTF-8, or null for NULL.</summary>
        public static byte[] Utf8(string text)
        {
            if (text == null) return null;
            var bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
            Encoding.UTF8.GetBytes(text, 0, text.Length, bytes, 0);
            return bytes;
        }

        /// <summary>Bytes as given, NUL appended (for callers that hand floorbell raw bytes).</summary>
        public static byte[] Terminated(byte[] raw)
        {
            var bytes = new byte[raw.Length + 1];
            Buffer.BlockCopy(raw, 0, bytes, 0, raw.Length);
            return bytes;
        }

        /// <summary>This thread's last error text ("" when none).</summary>
        public static string LastError()
        {
            ulong n = (ulong)floorbell_last_error_length();
            if (n == 0) return "";
            var buffer = new byte[n + 1];
            ulong written = (ulong)floorbell_last_error_message(buffer, (UIntPtr)(n + 1));
            return Encoding.UTF8.GetString(buffer, 0, (int)written);
        }

        public static void Check(Status status)
        {
            if (status != Status.Ok) throw new FloorbellException(status, LastError());
        }

        /// <summary>Copies a string floorbell handed out, then frees it.</summary>
        public static string Take(IntPtr text, long length = -1)
        {
            if (text == IntPtr.Zero) return "";
            try
            {
                if (length < 0)
                {
                    length = 0;
                    while (Marshal.ReadByte(text, (int)length) != 0) length++;
                }
                var bytes = new byte[length];
                Marshal.Copy(text, bytes, 0, (int)length);
                return Encoding.UTF8.GetString(bytes);
            }
            finally
            {
                floorbell_string_free(text);
            }
        }
    }

    /// <summary>An open engine: one data directory (floorbell_engine_open).</summary>
    public sealed class Engine : IDisposable
    {
        readonly EngineHandle handle;

        // Subscription id → its delegate. The delegate is what native code
        // calls: it must stay reachable (not collected) while floorbell may
        // call it, so the handle roots it with a GCHandle (also for an engine
        // finalized without Dispose) until Unsubscribe, which returns only
        // after a call in progress on another thread (the C contract). One
        // that unsubscribes itself from inside its own call is freed when
        // the next callback starts.
        readonly Dictionary<ulong, Subscription> subscriptions = new Dictionary<ulong, Subscription>();
        readonly object gate = new object();

        [ThreadStatic] static bool inCallback;

        /// <summary>Whether this thread is inside a subscriber callback.</summary>
        internal static bool InCallback => inCallback;

        sealed class Subscription
        {
            public NativeCallback Callback;
            public volatile bool Active = true;
            // Set on the callback thread during a call.
            public volatile bool Running;
        }

        /// <summary>The library version, MAJOR.MINOR.PATCH.</summary>
        public static string Version
        {
            get
            {
                // Static memory owned by the library: copied, never freed.
                IntPtr p = Native.floorbell_version();
                int n = 0;
                while (Marshal.ReadByte(p, n) != 0) n++;
                var bytes = new byte[n];
                Marshal.Copy(p, bytes, 0, n);
                return Encoding.UTF8.GetString(bytes);
            }
        }

        /// <summary>Opens the engine of dataDir (created if missing); config is
        /// null or the text of a floorbell TOML config file.</summary>
        public Engine(string dataDir, string config = null)
        {
            if (dataDir == null) throw new ArgumentNullException(nameof(dataDir));
            EngineHandle h;
            Native.Check(Native.floorbell_engine_open(
                Native.Utf8(dataDir), Native.Utf8(config), out h));
            handle = h;
        }

        public bool IsClosed => handle.IsClosed;

        /// <summary>Stops serving, ends sessions, commits, frees the handle.
        /// Closing again does nothing. Not from a subscriber callback.</summary>
        public void Dispose()
        {
            if (inCallback)
                throw new FloorbellException(Status.WrongState, "Dispose called from a floorbell callback");
            if (handle.IsClosed) return;
            handle.Dispose();
            // A call still running on another thread (a callback's, say)
            // holds the handle: the close happens when it ends. Dispose
            // returns only after it, so the directory is free again then.
            handle.WaitReleased();
            lock (gate)
            {
                subscriptions.Clear();
            }
            if (handle.CloseStatus != Status.Ok)
                throw new FloorbellException(handle.CloseStatus, Native.LastError());
        }

        /// <summary>Runs a native call on the live handle; a closed engine
        /// answers Status.Closed instead of touching freed memory.</summary>
        T Call<T>(Func<EngineHandle, T> call)
        {
            if (handle.IsClosed) throw new FloorbellException(Status.Closed, "the engine is closed");
            try
            {
                return call(handle);
            }
            catch (ObjectDisposedException)
            {
                throw new FloorbellException(Status.Closed, "the engine is closed");
            }
        }

        void Run(Func<EngineHandle, Status> call) => Native.Check(Call(call));

        /// <summary>Publishes a QR event (a JSON object with "code", …) and
        /// returns its hash once it is on disk.</summary>
        public string PublishEvent(string eventJson) => Publish(Native.Utf8(eventJson));

        /// <summary>As PublishEvent, with the event's bytes as given (not
        /// re-encoded): floorbell checks they are UTF-8.</summary>
        public string PublishEventBytes(byte[] eventJson) => Publish(Native.Terminated(eventJson));

        string Publish(byte[] json)
        {
            var hash = new byte[11];
            Run(h => Native.floorbell_engine_publish_event(h, json, hash));
            return Encoding.ASCII.GetString(hash, 0, 10);
        }

        /// <summary>Validates a QR event and queues it for the store without
        /// waiting for the commit (floorbell_engine_submit_event): published
        /// with the next group commit, heard by subscribers (with its hash)
        /// only then. A bad event throws at once and queues nothing.</summary>
        public void SubmitEvent(string eventJson) =>
            Native.Check(Call(h =>
            {
                var status = Native.floorbell_engine_submit_event(h, Native.Utf8(eventJson));
                return status == Status.Queued ? Status.Ok : status; // accepted, not yet on disk
            }));

        // --- table-tracking gateway (SPEC §3) --------------------------------
        // Orders are addressed by name (while active) or uuid. Each write
        // returns after the change is on disk, with the HTTP API's answer as
        // JSON text ({"status":201,"activeorder":{…}}). Refusals throw
        // FloorbellException: InvalidArgument (HTTP 400), NotFound (404),
        // Conflict (409), with the HTTP message.

        /// <summary>Presses the gateway button: for 120 s, one
        /// GET /api/v2/accesstoken/generate gets a token.</summary>
        public void PressButton() => Run(h => Native.floorbell_engine_press_button(h));

        /// <summary>Starts an order: {"name":"66","orderType":"TO_GO","locationName":"22"}
        /// (locationName optional), as POST /api/v2/activeorders.</summary>
        public string StartOrder(string orderJson) => Start(Native.Utf8(orderJson));

        /// <summary>As StartOrder, with the body's bytes as given (not
        /// re-encoded): floorbell checks they are UTF-8.</summary>
        public string StartOrderBytes(byte[] orderJson) => Start(Native.Terminated(orderJson));

        string Start(byte[] json)
        {
            IntPtr order = IntPtr.Zero;
            Run(h => Native.floorbell_engine_order_start(h, json, out order));
            return Native.Take(order);
        }

        /// <summary>Changes an active order's orderType and/or locationName, as
        /// PUT /api/v2/activeorders/{key}.</summary>
        public string ModifyOrder(string key, string changesJson)
        {
            IntPtr order = IntPtr.Zero;
            Run(h => Native.floorbell_engine_order_modify(h, Native.Utf8(key), Native.Utf8(changesJson), out order));
            return Native.Take(order);
        }

        /// <summary>Pages the order's guest (POST /api/v2/activeorders/{key}/page).</summary>
        public string PageOrder(string key, bool tracking = true)
        {
            IntPtr order = IntPtr.Zero;
            Run(h => Native.floorbell_engine_order_page(h, Native.Utf8(key), tracking, out order));
            return Native.Take(order);
        }

        /// <summary>Clears an order (DELETE /api/v2/activeorders/{key}); the answer
        /// shows it "cleared".</summary>
        public string ClearOrder(string key)
        {
            IntPtr order = IntPtr.Zero;
            Run(h => Native.floorbell_engine_order_clear(h, Native.Utf8(key), out order));
            return Native.Take(order);
        }

        /// <summary>Clears every active order in one commit; returns how many.</summary>
        public ulong ClearAllOrders()
        {
            UIntPtr count = UIntPtr.Zero;
            Run(h => Native.floorbell_engine_orders_clear_all(h, out count));
            return (ulong)count;
        }

        /// <summary>The active orders, oldest first, as the JSON text of
        /// GET /api/v2/activeorders ({"status":200,"count":N,"items":[…]}).</summary>
        public string ActiveOrders()
        {
            IntPtr json = IntPtr.Zero;
            Run(h => Native.floorbell_engine_orders_active(h, out json));
            return Native.Take(json);
        }

        /// <summary>The retained events after hash (null, "none" or an unknown
        /// hash: all), as the JSON text of GET /api/v4/events.</summary>
        public string EventsSince(string hash = null)
        {
            IntPtr json = IntPtr.Zero;
            UIntPtr length = UIntPtr.Zero;
            Run(h => Native.floorbell_engine_events_since(h, Native.Utf8(hash), out json, out length));
            return Native.Take(json, (long)(ulong)length);
        }

        /// <summary>Serves HTTP and WebSocket in-process; returns the port.</summary>
        public ushort Serve(string listen = "127.0.0.1:0")
        {
            ushort port = 0;
            Run(h => Native.floorbell_engine_serve(h, Native.Utf8(listen), out port));
            return port;
        }

        public void StopServing() => Run(h => Native.floorbell_engine_stop_serving(h));

        /// <summary>Creates a staff account; returns its token (shown only now).</summary>
        public string AddStaff(string name)
        {
            IntPtr token = IntPtr.Zero;
            Run(h => Native.floorbell_engine_staff_add(h, Native.Utf8(name), out token));
            return Native.Take(token);
        }

        public void RemoveStaff(string name) =>
            Run(h => Native.floorbell_engine_staff_remove(h, Native.Utf8(name)));

        /// <summary>Opens a ticket-board session: "kiosk", "staff" or "display".</summary>
        public Session OpenSession(string role)
        {
            ulong id = 0;
            Run(h => Native.floorbell_session_open(h, Native.Utf8(role), out id));
            return new Session(this, id, role);
        }

        internal string SessionCommand(ulong id, string command)
        {
            IntPtr reply = IntPtr.Zero;
            Run(h => Native.floorbell_session_command(h, id, Native.Utf8(command), out reply));
            return Native.Take(reply);
        }

        internal void SessionClose(ulong id) => Run(h => Native.floorbell_session_close(h, id));

        /// <summary>Calls callback(kind, text) for every committed change, on
        /// floorbell's callback thread. An exception thrown by the callback is
        /// written to stderr (it cannot cross into native code). Returns the
        /// subscription id.</summary>
        public ulong Subscribe(Action<ChangeKind, string> callback)
        {
            if (callback == null) throw new ArgumentNullException(nameof(callback));
            var sub = new Subscription();
            var roots = handle.Roots;
            sub.Callback = (userData, kind, data, length) =>
            {
                roots.FreeDeferred();
                if (!sub.Active) return; // unsubscribed: a change already in flight
                inCallback = true;
                sub.Running = true;
                try
                {
                    var bytes = new byte[(int)(ulong)length];
                    if (data != IntPtr.Zero) Marshal.Copy(data, bytes, 0, bytes.Length);
                    callback((ChangeKind)kind, Encoding.UTF8.GetString(bytes));
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine("floorbell: subscriber callback threw: " + e);
                }
                finally
                {
                    sub.Running = false;
                    inCallback = false;
                }
            };
            ulong id = 0;
            lock (gate)
            {
                handle.Roots.Add(sub.Callback);
                try
                {
                    Run(h => Native.floorbell_engine_subscribe(h, sub.Callback, IntPtr.Zero, out id));
                }
                catch
                {
                    handle.Roots.Free(sub.Callback); // nothing was subscribed
                    throw;
                }
                subscriptions[id] = sub;
            }
            return id;
        }

        /// <summary>Ends a subscription; its callback is not called after this returns.</summary>
        public void Unsubscribe(ulong subscription)
        {
            Run(h => Native.floorbell_engine_unsubscribe(h, subscription));
            lock (gate)
            {
                Subscription sub;
                if (subscriptions.TryGetValue(subscription, out sub))
                {
                    sub.Active = false;
                    subscriptions.Remove(subscription);
                    // Running now only when called from inside it (floorbell
                    // waited for a call on another thread to return).
                    if (sub.Running && inCallback) handle.Roots.Defer(sub.Callback);
                    else handle.Roots.Free(sub.Callback);
                }
            }
        }
    }

    /// <summary>A ticket-board session, as if a client connected to /ws/ROLE.</summary>
    public sealed class Session : IDisposable
    {
        readonly Engine engine;
        bool closed;

        public ulong Id { get; }
        public string Role { get; }

        internal Session(Engine engine, ulong id, string role)
        {
            this.engine = engine;
            Id = id;
            Role = role;
        }

        /// <summary>Sends one command and returns the reply ("success …" or
        /// "error …") after the change is on disk. An "error …" reply is a
        /// normal answer, not an exception.</summary>
        public string Command(string text) => engine.SessionCommand(Id, text);

        /// <summary>Closes the session; again, or after the engine closed, does nothing.</summary>
        public void Dispose()
        {
            if (closed || engine.IsClosed)
            {
                closed = true;
                return;
            }
            engine.SessionClose(Id);
            closed = true;
        }
    }
}
